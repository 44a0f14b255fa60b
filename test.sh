#!/usr/bin/env bash
# The test command: makes/activates the project's venv (path.sh), then runs the whole pytest suite.
#   ./test.sh                 # everything (about 7 minutes on 2 quiet cores, plus .venv set-up the first time)
#   ./test.sh -k score -x     # any pytest options
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
exec python -m pytest "$@"
