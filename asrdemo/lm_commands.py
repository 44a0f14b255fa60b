"""`asrdemo lm`: the language model's subcommands (ESPnet's asr.sh LM stages, and fusing the LM in).

    asrdemo lm train --config conf/lm.yaml --token_list data/lang/tokens.txt \\
        --train_text data/train/text [--lm_train_text sentences.txt] --valid_text data/dev/text --exp_dir exp/lm
    asrdemo lm perplexity --lm_dir exp/lm --text data/test/text [--out_dir exp/lm/perplexity_test]
    asrdemo lm attach --lm_dir exp/lm --exp_dir exp/train_mini     # decoding with lm_weight > 0 uses it

Training: asrdemo/train/lm_trainer.py; the model: asrdemo/model/lm.py; fusion and the exp dir's
`lm/`: asrdemo/decode/lm_scorer.py.
"""

import json
import logging
from pathlib import Path

from asrdemo.errors import AsrdemoError
from asrdemo.utils.io import atomic_write_text

log = logging.getLogger(__name__)


def add_arguments(p):
    from asrdemo.train import lm_trainer

    sub = p.add_subparsers(dest="lm_command", metavar="LM_COMMAND")
    lm_trainer.add_arguments(sub.add_parser("train", help="train a character LM on the ASR token list"))
    q = sub.add_parser("perplexity", help="perplexity of an LM on a Kaldi text file")
    q.add_argument("--lm_dir", required=True, help="an LM exp dir (asrdemo lm train) or an exp dir's lm/")
    q.add_argument("--text", required=True, help="Kaldi `text` (utt_id text)")
    q.add_argument("--out_dir", default=None, help="write ppl (one line) and ppl.json here")
    q.add_argument("--device", default="cpu")
    a = sub.add_parser("attach", help="copy an LM into an ASR exp dir (exp/<tag>/lm/) and name it in config.yaml")
    a.add_argument("--lm_dir", required=True)
    a.add_argument("--exp_dir", required=True)


def main(args):
    if args.lm_command == "train":
        from asrdemo.train.lm_trainer import train_lm

        return train_lm(args)
    if args.lm_command == "perplexity":
        from asrdemo.data.datadir import read_kv
        from asrdemo.data.tokens import TokenList
        from asrdemo.decode.lm_scorer import load_lm, perplexity

        from asrdemo.utils.config import read_yaml

        lm = load_lm(args.lm_dir, args.device)
        token_type = read_yaml(Path(args.lm_dir) / "config.yaml", "LM config").get("token_type")
        result = perplexity(lm, TokenList.load(Path(args.lm_dir) / "tokens.txt", token_type=token_type),
                            list(read_kv(args.text).values()))
        line = (f"perplexity {result['ppl']:.3f} ({result['nll_per_token']:.4f} nats per token; "
                f"{result['sentences']} sentences, {result['tokens']} tokens incl. <eos>, {result['unk']} <unk>) "
                f"on {args.text}")
        if args.out_dir:
            out = Path(args.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "ppl", line + "\n")
            atomic_write_text(out / "ppl.json", json.dumps({**result, "text": str(args.text)}, indent=1) + "\n")
        log.info("%s", line)
        print(line)
        return None
    if args.lm_command == "attach":
        from asrdemo.decode.lm_scorer import attach_lm

        attach_lm(args.exp_dir, args.lm_dir)
        return None
    raise AsrdemoError("asrdemo lm: give a subcommand: train, perplexity or attach")
