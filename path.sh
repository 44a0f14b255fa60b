# Source this file (`. ./path.sh`): it makes the project's virtual environment on first use and
# activates it. Re-installs when setup.py changes.
#   ASRDEMO_VENV   where the venv lives (default: <repo>/.venv)
#   ASRDEMO_TORCH  the torch requirement to install when no torch is importable (default torch==2.13.0,
#                  a CPU build on this project's machines; a GPU user's own torch is kept as it is)
ASRDEMO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ASRDEMO_ROOT
_venv=${ASRDEMO_VENV:-$ASRDEMO_ROOT/.venv}
_stamp=$_venv/.asrdemo-installed
if [ ! -f "$_stamp" ] || [ "$ASRDEMO_ROOT/setup.py" -nt "$_stamp" ]; then
  echo "path.sh: setting up $_venv (one time; about a minute)" >&2
  _sys_python=${PYTHON:-python3}
  if [ ! -x "$_venv/bin/python" ]; then
    if "$_sys_python" -c "import torch" 2>/dev/null; then
      # keep the torch the user already has (e.g. a CUDA build): let the venv see it
      "$_sys_python" -m venv --system-site-packages "$_venv" || return 1 2>/dev/null || exit 1
    else
      "$_sys_python" -m venv "$_venv" || return 1 2>/dev/null || exit 1
    fi
  fi
  if ! "$_venv/bin/python" -c "import torch" 2>/dev/null; then
    "$_venv/bin/python" -m pip install -q "${ASRDEMO_TORCH:-torch==2.13.0}" || { echo "path.sh: torch install failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  # ssl (transformers) is installed for its tests; `import asrdemo`, fbank training, decoding and the
  # demo never import it -- only an exp dir with `frontend: ssl` does
  "$_venv/bin/python" -m pip install -q -e "$ASRDEMO_ROOT[mini,synth,ssl,test]" || { echo "path.sh: pip install failed" >&2; return 1 2>/dev/null || exit 1; }
  touch "$_stamp"
fi
# shellcheck disable=SC1091
. "$_venv/bin/activate"
export PYTHONUNBUFFERED=1
unset _venv _stamp _sys_python
