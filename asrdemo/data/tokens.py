"""Stage 3: the token list — characters (default), sentencepiece pieces, or kana.

`token_type: kana` models write the reading (読み, hiragana; `asrdemo.kana.to_reading`) instead of
the text: a few dozen sounds every word shares, instead of thousands of characters seen a few times
each. The recognizer spells their output back into text (asrdemo/decode/spelling.py). ESPnet's
equivalent is `token_type: phn` with a pyopenjtalk g2p.

`tokens.txt` holds one token per line; a token's id is its line number (ESPnet's layout):
`<blank>` = 0, `<unk>` = 1, the units, `<sos/eos>` = last.

    asrdemo tokens --text data/train/text --out_dir data/lang [--token_type bpe --vocab_size 300]
"""

import logging
import os
import tempfile
from pathlib import Path

from asrdemo.data.datadir import read_text
from asrdemo.errors import AsrdemoError
from asrdemo.kana import spell, to_reading
from asrdemo.utils.io import atomic_write_lines, done_with, mark_done, read_lines

log = logging.getLogger(__name__)

BLANK, UNK, SOS_EOS, SPACE = "<blank>", "<unk>", "<sos/eos>", "<space>"
SPECIALS = (BLANK, UNK, SOS_EOS)


TOKEN_TYPES = ("char", "bpe", "kana")


class TokenList:
    """Maps text <-> token ids. With `bpe_model`, text is split into sentencepiece pieces; with
    `token_type="kana"`, into the characters of its reading (`decode` then gives the reading)."""

    def __init__(self, tokens, bpe_model=None, token_type=None):
        self.tokens = list(tokens)
        if self.tokens[:2] != [BLANK, UNK] or self.tokens[-1] != SOS_EOS:
            raise AsrdemoError(f"a token list must start with {BLANK}, {UNK} and end with {SOS_EOS}")
        if len(set(self.tokens)) != len(self.tokens):
            raise AsrdemoError("the token list has duplicates")
        self.token2id = {t: i for i, t in enumerate(self.tokens)}
        self.unk_id = 1
        self.token_type = token_type or ("bpe" if bpe_model is not None else "char")
        if self.token_type not in TOKEN_TYPES:
            raise AsrdemoError(f"unknown token type {self.token_type!r} ({', '.join(TOKEN_TYPES)})")
        if (self.token_type == "bpe") != (bpe_model is not None):
            raise AsrdemoError("token type bpe needs a sentencepiece model, and only it does")
        self.sp = None
        if bpe_model is not None:
            import sentencepiece as spm

            self.sp = spm.SentencePieceProcessor(model_file=str(bpe_model))

    @classmethod
    def load(cls, path, bpe_model=None, token_type=None):
        path = Path(path)
        if not path.is_file():
            raise AsrdemoError(f"missing token list {path} (made by stage 3, `asrdemo tokens`)")
        # split at "\n" only, as the list was written: splitlines() would also split a token such
        # as U+2028 and shift every id after it
        return cls(read_lines(path), bpe_model, token_type)

    def __len__(self):
        return len(self.tokens)

    def split(self, text: str):
        """Text -> units (characters, sentencepiece pieces, or the reading's kana)."""
        if self.sp is not None:
            return self.sp.encode(text, out_type=str)
        if self.token_type == "kana":
            return list(to_reading(text.strip()))
        return [SPACE if c == " " else c for c in text.strip()]

    def encode(self, text: str):
        return [self.token2id.get(t, self.unk_id) for t in self.split(text)]

    def decode(self, ids) -> str:
        units = [self.tokens[i] for i in ids if self.tokens[i] not in SPECIALS]
        if self.sp is not None:
            return "".join(units).replace("\u2581", " ").strip()
        return "".join(" " if u == SPACE else u for u in units)


    def to_text(self, ids) -> str:
        """Token ids -> the text a reader sees: `decode`, and for kana models the reading spelled
        in kanji and kana (`asrdemo.kana.spell`)."""
        text = self.decode(ids)
        return spell(text) if self.token_type == "kana" else text


def char_units(texts):
    units = set()
    for text in texts:
        units.update(SPACE if c == " " else c for c in text.strip())
    return sorted(units, key=lambda u: u.encode("utf-8"))


def train_sentencepiece(texts, model_path, vocab_size, model_type="unigram"):
    """Train a sentencepiece model on `texts` into `model_path` (atomically); returns its units in
    piece-id order, without sentencepiece's own <unk> (id 0)."""
    import sentencepiece as spm

    model_path = Path(model_path)
    with tempfile.TemporaryDirectory(dir=model_path.parent) as tmp:
        text_file = Path(tmp) / "train.txt"
        text_file.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
        try:
            spm.SentencePieceTrainer.train(
                input=str(text_file), model_prefix=f"{tmp}/bpe", vocab_size=vocab_size, model_type=model_type,
                character_coverage=1.0, unk_id=0, bos_id=-1, eos_id=-1, minloglevel=2,
            )
        except RuntimeError as e:  # e.g. "Vocabulary size too high (N). Please set it to a value <= M."
            raise AsrdemoError(f"sentencepiece training failed: {str(e).split('] ')[-1]}") from None
        os.replace(f"{tmp}/bpe.model", model_path)
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    return [sp.id_to_piece(i) for i in range(1, sp.get_piece_size())]


def make_token_list(text_path, out_dir, token_type="char", vocab_size=None, model_type="unigram"):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = list(read_text(text_path).values())
    if token_type == "char":
        units = char_units(texts)
    elif token_type == "kana":
        units = char_units(to_reading(t) for t in texts)
    elif token_type == "bpe":
        if not vocab_size:
            raise AsrdemoError("--vocab_size is required with --token_type bpe")
        units = train_sentencepiece(texts, out_dir / "bpe.model", vocab_size, model_type)
    else:
        raise AsrdemoError(f"unknown token type {token_type!r} ({', '.join(TOKEN_TYPES)})")
    tokens = [BLANK, UNK, *units, SOS_EOS]
    atomic_write_lines(out_dir / "tokens.txt", tokens)
    return tokens


def add_arguments(p):
    p.add_argument("--text", required=True, help="training transcripts (Kaldi `text`)")
    p.add_argument("--out_dir", required=True, help="e.g. data/lang")
    p.add_argument("--token_type", default="char", choices=TOKEN_TYPES)
    p.add_argument("--vocab_size", type=int, default=None, help="sentencepiece vocabulary size")
    p.add_argument("--bpe_model_type", default="unigram", choices=["unigram", "bpe"])


def main(args):
    out = Path(args.out_dir)
    settings = {"text": str(args.text), "token_type": args.token_type, "vocab_size": args.vocab_size,
                "bpe_model_type": args.bpe_model_type}
    required = ("tokens.txt",) + (("bpe.model",) if args.token_type == "bpe" else ())
    if done_with(out, settings, required):
        log.info("skipped: %s/tokens.txt is complete", out)
        return
    tokens = make_token_list(args.text, out, args.token_type, args.vocab_size, args.bpe_model_type)
    mark_done(out, **settings, num_tokens=len(tokens))
    log.info("wrote %s/tokens.txt: %d tokens (%s)", out, len(tokens), args.token_type)
