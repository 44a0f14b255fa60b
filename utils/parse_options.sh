# Option parsing shared by run.sh and decode.sh, sourced as Kaldi's, WeNet's and icefall's
# utils/parse_options.sh:   . "$(dirname "$0")/utils/parse_options.sh" "$@"
#
# The script declares its options, with their defaults and a comment each, between a line
# `# ---- options ...` and a line `# ---- end of options ----`, and defines `usage`. Then each
# `--name value` or `--name=value` sets the shell variable `name`; an option the script does not
# declare, or one without a value, is an error (exit 2); -h/--help prints `usage`. Other words are
# left, in order, in the array `args`; `given_options` lists the names that were given.

# the declared options, one `name=default  # comment` line each
options() { sed -n '/^# ---- options/,/^# ---- end of options/p' "$0" | grep -E '^[a-z_0-9]+='; }

args=()
given_options=" "
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --*=*) name=${1%%=*}; name=${name#--}; value=${1#*=}; shift ;;
    --*) [ $# -ge 2 ] || { echo "$(basename "$0"): $1 needs a value" >&2; exit 2; }; name=${1#--}; value=$2; shift 2 ;;
    *) args+=("$1"); shift; continue ;;
  esac
  options | grep -qE "^${name}=" || { echo "$(basename "$0"): unknown option --$name (see --help)" >&2; exit 2; }
  printf -v "$name" '%s' "$value"
  given_options+="$name "
done
unset name value
