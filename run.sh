#!/usr/bin/env bash
# The asrdemo recipe: JSUT (or the offline mini corpus) -> a trained joint CTC/attention model,
# its test-set CER, and a packaged model for the web demo.
#
#   ./run.sh                                  # real JSUT (downloads ~2.7 GB)
#   ./run.sh --corpus mini_jsut               # offline, synthesized corpus: every stage in minutes on a CPU
#   ./run.sh --corpus synth_ja                # the large offline corpus and the shipped model (hours on a CPU)
#   ./run.sh --stage 5 --stop_stage 5         # re-run stage 5 only (decoding)
#   ./run.sh --ngpu 1 --frontend ssl --ssl_model downloads/ssl/japanese-hubert-base
#                                             # self-supervised features (docs/jsut.md; pip install -e '.[ssl]')
#
# Stages (all files are relative to egs/<corpus>/):
#   0 corpus    downloads/jsut_ver1.1/            (JSUT: download+verify+unpack; mini_jsut, synth_ja: synthesize)
#   1 prepare   data/{train,dev,test}/            Kaldi data dirs
#   2 fbank     dump/fbank/{train,dev,test}/      80-dim fbank ark/scp; dump/fbank/train/cmvn.ark
#               (with --speed_perturb/--noise_copies: data/train_sp/ first, and dump/fbank/train_sp/ instead of train/)
#               (--frontend ssl: no fbank; stage 4 reads data/<set>/wav.scp and the SSL model makes the features)
#   3 tokens    data/lang/tokens.txt              character (or sentencepiece) token list
#   4 train     exp/<tag>/                        checkpoints, averaged model, train.log, tensorboard/, images/
#   5 decode    exp/<tag>/decode_test/            hyp.txt, result.txt, cer.txt
#   6 package   exp_train_large/ (repo root)      what the demo loads (mini_jsut: egs/mini_jsut/package/)
#   7 evaluate  exp/<tag>/decode_eval/            synth_ja only: CER per voice and SNR on data/eval_* (unseen
#                                                 sentences, voices and noises), eval_table.md, copied to the package
#
# A stage is skipped when its output dir's `.done` marker records the digest of the stage's inputs
# as they are now (their contents, not their times); the stage named by an explicit --stage is
# always re-run.
set -euo pipefail

# ---- options (each can be given as --name value) ----
corpus=jsut            # jsut | mini_jsut | synth_ja
stage=0
stop_stage=7
nj=2                   # parallel jobs for features and decoding
tag=""                 # exp/<tag>; default: the train config's name
train_config=""        # default: conf/train.yaml (jsut) or conf/train_mini.yaml (mini_jsut); conf/train_ssl.yaml with --frontend ssl
frontend=fbank         # fbank | ssl: a self-supervised model (wav2vec 2.0 / HuBERT / WavLM) on the audio (docs/jsut.md)
ssl_model=""           # with --frontend ssl: a local model folder or a Hugging Face name in the local cache
                       # (default: the train config's frontend_conf.model); never downloaded here
decode_config=""       # default: conf/decode.yaml; conf/decode_synth.yaml for synth_ja (its search, chosen on dev_natural)
fbank_config=conf/fbank.yaml
decode_mode=""         # override the decode config's mode (ctc_greedy, joint, attention_rescoring, ...)
token_type=""          # char | bpe | kana (default: kana for synth_ja, which spells its readings; else char)
vocab_size=""          # sentencepiece vocabulary size (token_type=bpe)
ngpu=0                 # >1: training through torchrun (see docs/training.md)
train_nproc=""         # with ngpu 0: CPU training processes (DDP over gloo, 1 thread each; default 2 for
                       # synth_ja, else 1): on 2 cores, 2 make an update ~1.3x faster than 1 (bench/RESULTS.md)
train_args=""          # more `asrdemo train` options, e.g. "--max_epochs 5 --set optim_conf.lr=0.001"
decode_args=""         # more `asrdemo decode` options, e.g. "--batch_size 8"
num_test=""            # test/dev sizes; default: 250/250 for JSUT (ESPnet's split), 20/20 for mini_jsut
num_dev=""
num_utts=""            # mini_jsut: how many sentences to synthesize (default: all)
hours=8                # synth_ja: hours of speech to synthesize (8 h: ~30 min on 2 cores, bench/RESULTS.md)
kokoro_hours=""        # synth_ja: of which read by the (slow) kokoro voices (default: 12 %)
free_ratio=0.5         # synth_ja: share of free (non-template) sentences (docs/synth_ja.md)
nonspeech_ratio=0.03   # synth_ja: noise-only utterances (empty transcript) per speech utterance
synth_version=4        # synth_ja: 4 adds converted speakers, simulated rooms, lossy codecs; 3: the shipped model's corpora
eval_sentences=60      # synth_ja: sentences each evaluation voice reads (stage 7)
seed=0
use_lm=false           # true: also train a character LM in stage 4 (conf/lm.yaml) and decode with it (docs/training.md)
lm_config=conf/lm.yaml
lm_train_text=""       # more LM training text, one sentence per line (e.g. `asrdemo generate_text`'s output)
lm_weight=0.3          # with --use_lm true: the LM's weight in decoding (choose it on dev, not on test)
speed_perturb=""       # e.g. "0.9 1.0 1.1": train on speed-perturbed copies, data/train_sp (docs/augmentation.md)
noise_copies=0         # noisy copies of each training utterance, added to data/train_sp
snr_range="10,30"      # SNR range (dB) of the noisy copies
noise_dir=""           # folder of noise recordings (e.g. MUSAN's noise/); default: generated white/pink/brown/babble
jsut_url=""            # stage 0 (JSUT): another address for jsut_ver1.1.zip
jsut_zip=""            # ... or a local copy of the zip
jsut_root=""           # ... or an unpacked corpus
jsut_sha256=""         # ... expected sha256 of a mirror or trimmed zip
package_dir=""         # default: exp_train_large, the folder the demo loads -- except that the mini model
                       # never replaces a model trained on another corpus there (then: egs/mini_jsut/package)
shipped_dir=exp_train_large  # the demo's default folder, checked by that rule
work_dir=""            # where stages write (default: egs/<corpus>)
# ---- end of options ----

usage() { sed -n '2,25p' "$0"; echo; echo "Options:"; options | sed 's/^/  --/'; }
. "$(dirname "$0")/utils/parse_options.sh" "$@"
[ ${#args[@]} -eq 0 ] || { echo "run.sh: unexpected argument ${args[0]} (see --help)" >&2; exit 2; }
forced_stage=-1  # an explicit --stage always runs
case "$given_options" in *" stage "*) forced_stage=$stage ;; esac

root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
. ./path.sh

case "$frontend" in
  fbank) [ -z "$ssl_model" ] || { echo "run.sh: --ssl_model needs --frontend ssl" >&2; exit 2; } ;;
  ssl)   : "${train_config:=conf/train_ssl.yaml}" ;;
  *) echo "run.sh: unknown frontend '$frontend' (fbank or ssl)" >&2; exit 2 ;;
esac
case "$corpus" in
  jsut)      : "${train_config:=conf/train.yaml}"; : "${num_test:=250}"; : "${num_dev:=250}" ;;
  # the mini model decodes with attention_rescoring: as accurate as joint there, and faster
  mini_jsut) : "${train_config:=conf/train_mini.yaml}"; : "${num_test:=20}"; : "${num_dev:=20}"
             : "${decode_mode:=attention_rescoring}" ;;
  synth_ja)  : "${train_config:=conf/train_synth.yaml}"; : "${num_test:=200}"; : "${num_dev:=200}"
             : "${decode_config:=conf/decode_synth.yaml}"; : "${token_type:=kana}"; : "${train_nproc:=2}" ;;
  *) echo "run.sh: unknown corpus '$corpus' (jsut, mini_jsut or synth_ja)" >&2; exit 2 ;;
esac
: "${token_type:=char}"; : "${train_nproc:=1}"; : "${decode_config:=conf/decode.yaml}"
shipped_dir=$(cd "$root" && realpath -m "$shipped_dir")
if [ -z "$package_dir" ]; then
  package_dir=$shipped_dir
  # a packaged model's README names its corpus; the mini model only replaces another mini model
  if [ "$corpus" = mini_jsut ] && [ -f "$shipped_dir/config.yaml" ] && ! grep -q '^- corpus: mini_jsut$' "$shipped_dir/README.md" 2>/dev/null; then
    package_dir=egs/mini_jsut/package
    echo "run.sh: $shipped_dir holds a model trained on $(sed -n 's/^- corpus: //p' "$shipped_dir/README.md" 2>/dev/null | head -1); the mini model is packaged into $package_dir (--package_dir to choose)"
  fi
fi
augmented=""; { [ -n "$speed_perturb" ] || [ "$noise_copies" != 0 ]; } && augmented=_sp
[ -n "$tag" ] || tag=$(basename "$train_config" .yaml)$augmented   # an augmented run never resumes a plain one
for f in "$train_config" "$decode_config" "$fbank_config"; do
  [ -f "$f" ] || { echo "run.sh: missing config $f" >&2; exit 1; }
done
if [ "$frontend" = fbank ] && grep -q '^frontend: *ssl' "$train_config"; then
  frontend=ssl; echo "run.sh: $train_config says frontend: ssl; running the SSL recipe (no fbank stage)"
fi
# paths are given relative to the repo root (or absolute); stages run inside the work dir
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
train_config=$(abspath "$train_config"); decode_config=$(abspath "$decode_config")
fbank_config=$(abspath "$fbank_config"); package_dir=$(abspath "$package_dir")
for v in jsut_zip jsut_root noise_dir; do [ -z "${!v}" ] || printf -v "$v" '%s' "$(abspath "${!v}")"; done
# a model folder given relative to the repo root (a hub name is left as it is)
if [ -n "$ssl_model" ] && [ -e "$(abspath "$ssl_model")" ]; then ssl_model=$(abspath "$ssl_model"); fi

work=$(abspath "${work_dir:-egs/$corpus}")
mkdir -p "$work"
cd "$work"
corpus_root=downloads/jsut_ver1.1
exp=exp/$tag
# the training set: data/train, or its augmented copy data/train_sp (made at the start of stage 2)
train_set=train$augmented
# an input of stage 2: other augmentation options make other features
mkdir -p data
echo "$train_set speeds=${speed_perturb:-1.0} noise_copies=$noise_copies snr_range=$snr_range noise_dir=$noise_dir seed=$seed" \
  > data/augment_opts

log() { echo "$(date '+%H:%M:%S') run.sh: $*"; }
where() { case "$1" in /*) echo "$1" ;; *) echo "$work/$1" ;; esac; }  # a path as the user can find it
declare -A stage_seconds=()

# stage_needed N OUT_DIR INPUT...: succeeds when stage N must run. A stage in range is skipped when
# OUT_DIR/.done records the digest of its inputs as they are now (asrdemo.utils.io.input_digest: a
# file's bytes, an input dir's .done), the one done-marker rule the subcommands follow too; the
# explicit --stage always runs. stage_done records the digest, taken when the stage has finished.
stage_needed() {
  local n=$1 out=$2; shift 2
  [ "$n" -ge "$stage" ] && [ "$n" -le "$stop_stage" ] || return 1
  stage_out=$out; stage_inputs=("$@")
  if [ "$n" != "$forced_stage" ] && [ -f "$out/.done" ]; then
    if python -m asrdemo.utils.io done_with_inputs "$out" "$@"; then
      log "stage $n: skipped, $(where "$out") is up to date (remove $(where "$out")/.done to redo)"
      return 1
    fi
    log "stage $n: its inputs changed since $(where "$out") was made; redoing"
  fi
  rm -f "$out/.done"
  log "stage $n: start -> $(where "$out")"
  SECONDS=0
}
stage_done() {
  python -m asrdemo.utils.io mark_done_with_inputs "$stage_out" "${stage_inputs[@]}"
  stage_seconds[$1]=$SECONDS; log "stage $1: done in ${SECONDS} s"
}
# require FILE STAGE: fail at once, naming the stage that makes FILE
require() {
  [ -e "$1" ] || { echo "run.sh: missing $work/$1 — it is made by stage $2 (run: ./run.sh --corpus $corpus --stage $2)" >&2; exit 1; }
}

if stage_needed 0 "$corpus_root"; then
  if [ "$corpus" = mini_jsut ]; then
    asrdemo make_mini_jsut --out_dir downloads --seed "$seed" --nj "$nj" ${num_utts:+--num_utts "$num_utts"}
  elif [ "$corpus" = synth_ja ]; then
    asrdemo make_synth_ja --out_dir downloads --hours "$hours" --seed "$seed" --nj "$nj" \
      --free_ratio "$free_ratio" --nonspeech_ratio "$nonspeech_ratio" --synth_version "$synth_version" \
      ${kokoro_hours:+--kokoro_hours "$kokoro_hours"}
  else
    asrdemo download --out_dir downloads ${jsut_url:+--jsut_url "$jsut_url"} ${jsut_zip:+--jsut_zip "$jsut_zip"} \
      ${jsut_root:+--jsut_root "$jsut_root"} ${jsut_sha256:+--jsut_sha256 "$jsut_sha256"}
  fi
  stage_done 0
fi

if stage_needed 1 data "$corpus_root"; then
  require "$corpus_root/.done" 0
  asrdemo prepare --corpus_root "$corpus_root" --out_dir data --num_test "$num_test" --num_dev "$num_dev"
  stage_done 1
fi

if [ "$frontend" = ssl ]; then
  # An SSL frontend's features depend on weights that train (its layer weights and projection, the
  # SSL model when fine-tuned): they are made on the fly from the audio in stage 4, never dumped.
  # Only the augmented copies of the training set are made here.
  if [ "$train_set" = train_sp ] && stage_needed 2 data/train_sp data "$fbank_config" data/augment_opts; then
    require data/train/wav.scp 1
    asrdemo augment --data_dir data/train --out_dir data/train_sp --speeds "${speed_perturb:-1.0}" \
      --noise_copies "$noise_copies" --snr_range "$snr_range" ${noise_dir:+--noise_dir "$noise_dir"} \
      --seed "$seed" --nj "$nj" --sample_rate "$(sed -n 's/^sample_rate: *//p' "$fbank_config")"
    touch data/train_sp/.done
    stage_done 2
  elif [ 2 -ge "$stage" ] && [ 2 -le "$stop_stage" ]; then
    log "stage 2: --frontend ssl computes its features from data/*/wav.scp in stage 4: no fbank dump"
  fi
elif stage_needed 2 dump/fbank data "$fbank_config" data/augment_opts; then
  if [ "$train_set" = train_sp ]; then
    require data/train/wav.scp 1
    asrdemo augment --data_dir data/train --out_dir data/train_sp --speeds "${speed_perturb:-1.0}" \
      --noise_copies "$noise_copies" --snr_range "$snr_range" ${noise_dir:+--noise_dir "$noise_dir"} \
      --seed "$seed" --nj "$nj" --sample_rate "$(sed -n 's/^sample_rate: *//p' "$fbank_config")"
  fi
  for set in "$train_set" dev test; do
    require "data/$set/wav.scp" 1
    asrdemo fbank --data_dir "data/$set" --out_dir "dump/fbank/$set" --fbank_config "$fbank_config" --nj "$nj" \
      $([ "$set" = "$train_set" ] && echo --cmvn)
  done
  stage_done 2
fi

if stage_needed 3 data/lang data; then
  require data/train/text 1
  asrdemo tokens --text data/train/text --out_dir data/lang --token_type "$token_type" ${vocab_size:+--vocab_size "$vocab_size"}
  stage_done 3
fi

# what stage 4 trains on: the fbank dump, or (--frontend ssl) the data dirs' audio
if [ "$frontend" = ssl ]; then train_input=data; train_dir=data/$train_set; valid_dir=data/dev
else train_input=dump/fbank; train_dir=dump/fbank/$train_set; valid_dir=dump/fbank/dev; fi
if stage_needed 4 "$exp" "$train_input" data/lang "$train_config"; then
  if [ "$frontend" = ssl ]; then
    require "$train_dir/wav.scp" "$([ "$train_set" = train_sp ] && echo 2 || echo 1)"
    require "$valid_dir/wav.scp" 1
  else
    for f in "$train_dir/feats.scp" "$train_dir/cmvn.ark" "$valid_dir/feats.scp"; do require "$f" 2; done
  fi
  require data/lang/tokens.txt 3
  resume=""; [ -d "$exp/checkpoints" ] && resume=--resume   # a killed run continues where it stopped
  ssl_args=()
  [ "$frontend" = fbank ] || ssl_args=(--set frontend=ssl ${ssl_model:+--set "frontend_conf.model=$ssl_model"})
  asrdemo train --config "$train_config" --train_dir "$train_dir" --valid_dir "$valid_dir" \
    --token_list data/lang/tokens.txt --token_type "$token_type" $([ -f data/lang/bpe.model ] && echo --bpe_model data/lang/bpe.model) \
    --exp_dir "$exp" --ngpu "$ngpu" --nproc "$train_nproc" --seed "$seed" ${ssl_args[@]+"${ssl_args[@]}"} $resume $train_args
  stage_done 4
fi

# ---- the language model (--use_lm true), part of stage 4 ----
# ESPnet's asr.sh has LM stages of their own (text -> ASR token list -> train -> perplexity); here they
# belong to stage 4 so that no stage number changes: exp/lm_<config>/ is trained on data/train/text
# (+ --lm_train_text) with the ASR token list and validated on data/dev/text, its test-set perplexity
# goes to exp/lm_<config>/perplexity_test/ppl, and it is attached to the ASR exp dir (exp/<tag>/lm/),
# which stage 5 (and 7) then decode with --lm_weight.
lm_exp=exp/lm_$(basename "$lm_config" .yaml)
if [ "$use_lm" = true ]; then
  lm_config=$(abspath "$lm_config")
  [ -f "$lm_config" ] || { echo "run.sh: missing config $lm_config" >&2; exit 1; }
  [ -z "$lm_train_text" ] || lm_train_text=$(abspath "$lm_train_text")
  if stage_needed 4 "$lm_exp" data data/lang "$lm_config" ${lm_train_text:+"$lm_train_text"}; then
    require data/lang/tokens.txt 3
    lm_resume=""; [ -d "$lm_exp/checkpoints" ] && lm_resume=--resume
    asrdemo lm train --config "$lm_config" --token_list data/lang/tokens.txt --token_type "$token_type" --train_text data/train/text \
      ${lm_train_text:+--lm_train_text "$lm_train_text"} --valid_text data/dev/text --exp_dir "$lm_exp" \
      --ngpu "$ngpu" --seed "$seed" $lm_resume
    asrdemo lm perplexity --lm_dir "$lm_exp" --text data/test/text --out_dir "$lm_exp/perplexity_test"
    stage_done 4
  fi
  # (re)attach when the LM or the ASR model changed (training rewrites config.yaml without its lm:)
  if stage_needed 4 "$exp/lm" "$lm_exp" "$exp/config.yaml"; then
    require "$exp/config.yaml" 4
    asrdemo lm attach --lm_dir "$lm_exp" --exp_dir "$exp"
    stage_done 4
  fi
  decode_args="--lm_weight $lm_weight $decode_args"
fi
# an input of stages 5 and 7: another search mode, other decode arguments, or switching the LM on or
# off decodes again (as does another attached LM: exp/<tag>/lm is an input too)
decode_opts="mode=$decode_mode args=$decode_args lm=$([ "$use_lm" = true ] && echo "$lm_exp" || echo none)"
[ ! -d "$exp" ] || echo "$decode_opts" > "$exp/decode_opts"

if stage_needed 5 "$exp/decode_test" "$exp" "$decode_config" "$exp/decode_opts" "$exp/lm"; then
  require "$exp/config.yaml" 4
  require data/test/wav.scp 1
  asrdemo decode --exp_dir "$exp" --input data/test --out_dir "$exp/decode_test" --nj "$nj" \
    --decode_config "$decode_config" ${decode_mode:+--mode "$decode_mode"} $decode_args
  asrdemo plot --exp_dir "$exp"
  stage_done 5
fi

if stage_needed 6 "$package_dir" "$exp/decode_test"; then
  require "$exp/decode_test/cer.txt" 5
  # the synth_ja package is the one committed to git: float16 weights keep it small
  asrdemo package --exp_dir "$exp" --decode_dir "$exp/decode_test" --out_dir "$package_dir" \
    --corpus "$corpus" $([ "$corpus" = synth_ja ] && echo --half)
  stage_done 6
fi

if [ "$corpus" = synth_ja ] && stage_needed 7 "$exp/decode_eval" "$exp/decode_test" "$package_dir" "$exp/decode_opts"; then
  require "$package_dir/config.yaml" 6
  # the package is measured, not the exp dir: its float16 weights are what the demo and git get
  asrdemo make_eval_sets --out_dir data --num_sentences "$eval_sentences" --nj "$nj"
  for set in eval_clean eval_snr20 eval_snr10 eval_snr5; do
    asrdemo decode --exp_dir "$package_dir" --input "data/$set" --out_dir "$exp/decode_eval/$set" --nj "$nj" \
      --decode_config "$decode_config" ${decode_mode:+--mode "$decode_mode"} $decode_args
  done
  asrdemo eval_table --data_root data --decode_root "$exp/decode_eval" --exp_dir "$package_dir" \
    ${decode_mode:+--mode "$decode_mode"} --out "$exp/decode_eval/eval_table.md" \
    $([ -f "$package_dir/README.md" ] && echo --package_dir "$package_dir")
  stage_done 7
fi

# ---- report ----
if [ -f "$exp/decode_test/cer.txt" ]; then
  echo
  echo "| corpus | exp | test set | result |"
  echo "|---|---|---|---|"
  echo "| $corpus | $work/$exp | $work/data/test | $(head -n1 "$exp/decode_test/cer.txt") |"
  if [ ${#stage_seconds[@]} -gt 0 ]; then
    echo
    for n in $(printf '%s\n' "${!stage_seconds[@]}" | sort -n); do echo "stage $n: ${stage_seconds[$n]} s"; done
  fi
fi
