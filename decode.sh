#!/usr/bin/env bash
# Decode a Kaldi data dir, or a folder of audio files, with any exp dir, in N parallel jobs.
#
#   ./decode.sh [options] EXP_DIR INPUT OUT_DIR
#   ./decode.sh --nj 4 exp_train_large data/test exp_train_large/decode_test
#   ./decode.sh --nj 2 --mode attention_rescoring exp/train ~/recordings /tmp/recordings_hyp
#   ./decode.sh --nj 8 --cmd "srun -n1 -c1" exp/train data/test exp/train/decode_test   # on a cluster
#   ./decode.sh --streaming true --chunk_size 16 exp/train data/test exp/train/decode_test_stream16
#
# INPUT: a data dir (wav.scp; text = references), a folder of .wav/.flac/.ogg files at any rate, mono
# or multi-channel (utterance id = file name without extension), or a wav.scp list.
# Steps: split INPUT into N lists (OUT_DIR/splitN/wav.<i>.scp) -> run job i = 1..N through CMD
# (default: a local background process), logs in OUT_DIR/log/decode.<i>.log -> wait -> merge into
# OUT_DIR/hyp.txt -> with references, score (ref.txt, result.txt, cer.txt). Paths are relative to
# the current directory. A finished OUT_DIR with the same settings is skipped.
set -euo pipefail

# ---- options (each can be given as --name value) ----
nj=4                   # parallel jobs
mode=""                # search mode; overrides the decode config's (ctc_greedy, ctc_prefix_beam, attention, joint, attention_rescoring)
cmd=""                 # prefix that runs one job, e.g. "srun -n1"; default: run locally in the background
decode_config=""       # default: EXP_DIR/decode.yaml if present, else conf/decode.yaml next to this script
model_file=""          # default: EXP_DIR/valid.acc.ave.pth, else the newest checkpoint
batch_size=1           # utterances per batch within a job
num_threads=1          # torch threads per job
device=cpu             # cpu, cuda, cuda:1, ...
streaming=false        # true: decode chunk by chunk as a stream (docs/streaming.md)
chunk_size=16          # with streaming: encoder frames per chunk
num_left_chunks=-1     # with streaming: chunks of left context (-1: all)
# ---- end of options ----

usage() { sed -n '2,16p' "$0"; echo; echo "Options:"; options | sed 's/^/  --/'; }
. "$(dirname "${BASH_SOURCE[0]}")/utils/parse_options.sh" "$@"
[ ${#args[@]} -eq 3 ] || { echo "decode.sh: need EXP_DIR INPUT OUT_DIR (see --help)" >&2; exit 2; }
exp_dir=${args[0]}; input=${args[1]}; out_dir=${args[2]}
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || { echo "decode.sh: --nj must be a positive integer" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -f "$root/path.sh" ]; then . "$root/path.sh"; fi
python=$(command -v python || command -v python3)
if [ -z "$decode_config" ] && [ ! -f "$exp_dir/decode.yaml" ] && [ -f "$root/conf/decode.yaml" ]; then
  decode_config=$root/conf/decode.yaml
fi

common=(--exp_dir "$exp_dir" --input "$input" --out_dir "$out_dir" --nj "$nj" --batch_size "$batch_size"
        --num_threads "$num_threads" --device "$device")
[ -z "$mode" ] || common+=(--mode "$mode")
[ -z "$decode_config" ] || common+=(--decode_config "$decode_config")
[ -z "$model_file" ] || common+=(--model_file "$model_file")
case "$streaming" in
  true) common+=(--streaming --chunk_size "$chunk_size" --num_left_chunks "$num_left_chunks") ;;
  false) ;;
  *) echo "decode.sh: --streaming must be true or false, got '$streaming'" >&2; exit 2 ;;
esac
asrdemo() { PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$python" -m asrdemo "$@"; }

echo "decode.sh: $exp_dir on $input -> $out_dir ($nj jobs${cmd:+ through '$cmd'})"
asrdemo decode "${common[@]}" --step split
mkdir -p "$out_dir/log"
pids=()
for i in $(seq 1 "$nj"); do
  # shellcheck disable=SC2086  # $cmd is a command prefix: split into words on purpose
  PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" $cmd "$python" -m asrdemo decode "${common[@]}" --step job --job "$i" \
    > "$out_dir/log/decode.$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in $(seq 1 "$nj"); do
  if ! wait "${pids[$((i - 1))]}"; then
    echo "decode.sh: job $i failed; see $out_dir/log/decode.$i.log:" >&2
    tail -n 3 "$out_dir/log/decode.$i.log" | sed 's/^/  /' >&2
    failed=$((failed + 1))
  fi
done
[ "$failed" -eq 0 ] || { echo "decode.sh: $failed of $nj jobs failed" >&2; exit 1; }
asrdemo decode "${common[@]}" --step merge
if [ -f "$out_dir/cer.txt" ]; then echo "decode.sh: $(head -n 1 "$out_dir/cer.txt")  ($out_dir/result.txt)"; fi
echo "decode.sh: wrote $out_dir/hyp.txt"
