"""The one `asrdemo` command. Each subcommand lives in its own module, imported only when used.

A subcommand module defines `add_arguments(parser)` and `main(args)`; errors the user can fix
are raised as `AsrdemoError` and printed without a traceback.
"""

import argparse
import importlib
import logging
import sys

from asrdemo.errors import AsrdemoError

# name -> (module, one-line help); the order is the recipe's order.
COMMANDS = {
    "make_mini_jsut": ("asrdemo.data.mini_jsut", "synthesize the offline mini corpus in JSUT's layout"),
    "make_synth_ja": ("asrdemo.data.synth_ja", "synthesize the large offline corpus (generated text, many voices)"),
    "generate_text": ("asrdemo.data.sentence_gen", "write sentences of the project's own text generator"),
    "make_eval_sets": ("asrdemo.data.synth_eval", "synthesize the evaluation sets (unseen sentences, voices, noises)"),
    "eval_table": ("asrdemo.evaluate", "CER per voice and SNR on the evaluation sets, the sample, noise, silence"),
    "download": ("asrdemo.data.download", "download / verify / unpack JSUT (resumable)"),
    "prepare": ("asrdemo.data.jsut", "JSUT layout -> Kaldi data dirs (train/dev/test)"),
    "augment": ("asrdemo.data.augment", "speed perturbation and noisy copies of a data dir"),
    "fbank": ("asrdemo.data.features", "80-dim fbank of a data dir into ark/scp (+ global CMVN)"),
    "tokens": ("asrdemo.data.tokens", "token list (char or sentencepiece) from training text"),
    "train": ("asrdemo.train.trainer", "train a joint CTC/attention model from a YAML config"),
    "lm": ("asrdemo.lm_commands", "language model: train, perplexity, attach to an exp dir (shallow fusion)"),
    "average": ("asrdemo.train.average", "average the best checkpoints of an exp dir"),
    "plot": ("asrdemo.train.plot", "draw loss/acc/error curves of an exp dir"),
    "decode": ("asrdemo.decode.decode_dir", "decode a data dir or a folder of audio files"),
    "score": ("asrdemo.score", "CER with per-utterance alignment (result.txt, cer.txt)"),
    "package": ("asrdemo.package", "copy what the demo needs into one folder"),
    "serve": ("asrdemo.server.serve", "run the web demo (development server)"),
    "explain": ("asrdemo.explain", "follow one utterance through the model: figures + trace.json"),
}


def build_parser(argv_command=None):
    parser = argparse.ArgumentParser(prog="asrdemo", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == argv_command:  # import only the module that runs
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s [{args.command}] %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        importlib.import_module(COMMANDS[args.command][0]).main(args)
    except AsrdemoError as e:
        print(f"asrdemo {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
