"""Word lists for the sentence generator, read from the dictionary pyopenjtalk-plus ships.

pyopenjtalk-plus carries a compiled MeCab dictionary (NAIST-JDIC plus its additions, ~790k
entries) as `pyopenjtalk/dictionary/sys.dic`. MeCab's binary format (mecab/src/dictionary.cpp)
is a 72-byte header, a double-array trie, a token table and a feature blob:

    header   10 x uint32 (magic, version, type, lexsize, lsize, rsize, dsize, tsize, fsize, dummy)
             + 32-byte charset name
    trie     dsize bytes                          (surface -> token index; not needed here)
    tokens   tsize bytes, 16 per token: uint16 lcAttr, rcAttr, posid; int16 wcost;
             uint32 feature offset, compound
    features fsize bytes of NUL-terminated CSV strings:
             POS,POS1,POS2,POS3,conjugation type,conjugation form,base form,reading,pronunciation,...

Every feature string names its base form and its reading, so the word lists need neither the
trie nor MeCab. `wcost` (MeCab's word cost, lower = more likely) orders the words: the
generator prefers the cheap ones. Only words written in kana and JIS X 0208 level-1 kanji (the
2,965 everyday kanji) are kept, so the text stays ordinary Japanese.
"""

import importlib.util
import struct
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from asrdemo.errors import AsrdemoError

HEADER = struct.Struct("<10I32s")
DICTIONARY_MAGIC_ID = 0xEF718F77  # mecab/src/dictionary.cpp
TOKEN = np.dtype([("lc", "<u2"), ("rc", "<u2"), ("posid", "<u2"), ("wcost", "<i2"),
                  ("feature", "<u4"), ("compound", "<u4")])


def dictionary_path() -> Path:
    """`sys.dic` of the installed pyopenjtalk-plus (found without importing it: that is slow)."""
    spec = importlib.util.find_spec("pyopenjtalk")
    if spec is None or spec.origin is None:
        raise AsrdemoError("pyopenjtalk-plus is not installed (pip install -e '.[mini]')")
    path = Path(spec.origin).parent / "dictionary" / "sys.dic"
    if not path.is_file():
        raise AsrdemoError(f"pyopenjtalk-plus's dictionary is missing: {path}")
    return path


def is_level1_kanji(ch: str) -> bool:
    """True for a JIS X 0208 level-1 kanji (rows 16-47): the everyday set."""
    if not "\u4e00" <= ch <= "\u9fff":
        return False
    try:
        b = ch.encode("euc_jp")
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and 16 <= b[0] - 0xA0 <= 47


def is_hiragana(s: str) -> bool:
    return all("\u3041" <= c <= "\u3096" or c == "ー" for c in s)


def is_katakana(s: str) -> bool:
    return all("\u30a1" <= c <= "\u30fa" or c == "ー" for c in s)


def everyday(s: str) -> bool:
    """Only kana, 々 and level-1 kanji, and no kanji spelled half in katakana (カッ歩, キ属)."""
    if not s or not all(is_hiragana(c) or is_katakana(c) or c == "々" or is_level1_kanji(c) for c in s):
        return False
    return not (any(is_level1_kanji(c) for c in s) and any(is_katakana(c) and c != "ー" for c in s))


def kanji_word(s: str) -> bool:
    """Written in kanji, with at most okurigana or a honorific お/ご: not 大たん or 生せい (kanji + kana of a rarer kanji)."""
    core = s[1:] if s[:1] in ("お", "ご") else s
    return bool(core) and is_level1_kanji(core[0]) and not (is_level1_kanji(core[-1]) is False and len(core) <= 3)


def to_hiragana(s: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in s)


@dataclass(frozen=True)
class Entry:
    """One dictionary feature line: part of speech, conjugation, base form, reading, word cost."""

    pos: tuple  # (POS, POS1, POS2, POS3)
    ctype: str  # conjugation type, e.g. 五段・カ行イ音便, 一段, 形容詞・アウオ段, or *
    cform: str  # conjugation form, e.g. 基本形, 連用形, 未然形, 連用タ接続
    base: str
    reading: str  # katakana
    cost: int


def read_entries(path=None):
    """Every distinct feature line of `sys.dic` as an `Entry` (lowest cost of its tokens)."""
    path = Path(path) if path is not None else dictionary_path()
    blob = path.read_bytes()
    if len(blob) < HEADER.size:
        raise AsrdemoError(f"{path}: not a MeCab system dictionary (too short)")
    *sizes, charset = HEADER.unpack_from(blob)
    if sizes[0] ^ DICTIONARY_MAGIC_ID != len(blob):  # MeCab stores its magic as file size ^ this
        raise AsrdemoError(f"{path}: not a MeCab system dictionary (bad magic number)")
    dsize, tsize, fsize = sizes[6], sizes[7], sizes[8]
    charset = charset.split(b"\0")[0].decode("ascii") or "utf-8"
    start = HEADER.size + dsize
    if start + tsize + fsize > len(blob) or tsize % TOKEN.itemsize:
        raise AsrdemoError(f"{path}: not a MeCab system dictionary (sizes do not add up)")
    tokens = np.frombuffer(blob, dtype=TOKEN, count=tsize // TOKEN.itemsize, offset=start)
    features = blob[start + tsize: start + tsize + fsize]
    cost = {}
    for off, c in zip(tokens["feature"].tolist(), tokens["wcost"].tolist()):
        if off not in cost or c < cost[off]:
            cost[off] = c
    out = []
    for off, c in cost.items():
        f = features[off: features.index(b"\0", off)].decode(charset, errors="replace").split(",")
        if len(f) < 8:
            continue
        out.append(Entry(tuple(f[:4]), f[4], f[5], f[6], f[7], c))
    return out


def conjugated_surface(base: str, base_reading: str, form_reading: str):
    """The written form of a conjugated entry: the base form's okurigana swapped for the new ending.

    切り凌ぐ (キリシノグ) + キリシノギ -> 切り凌ぎ. None when the base does not end in the kana
    that change (written in katakana, irregular).
    """
    p = 0
    while p < min(len(base_reading), len(form_reading)) and base_reading[p] == form_reading[p]:
        p += 1
    old, new = to_hiragana(base_reading[p:]), to_hiragana(form_reading[p:])
    if not base.endswith(old) or (old == "" and p != len(base_reading)):
        return None
    stem = base[: len(base) - len(old)] if old else base
    if not stem:
        return None
    return stem + new


@dataclass(frozen=True)
class Verb:
    base: str  # 書く
    renyo: str  # 書き  (+ます, +たい)
    ta: str  # 書い  (+た, +て; with the euphonic change)
    mizen: str  # 書か  (+ない)
    ta_voiced: bool  # 泳い-だ / 泳い-で rather than -た / -て


@dataclass(frozen=True)
class Adjective:
    base: str  # 高い
    ku: str  # 高く (+なる, +ない)
    ta: str  # 高かっ (+た)


@dataclass
class Lexicon:
    """Word lists by role, each ordered by word cost (most likely first)."""

    nouns: list
    loanwords: list
    sahen: list  # nouns that take する: 勉強, 運動
    na_adjectives: list
    places: list
    surnames: list
    given_names: list
    verbs: list
    adjectives: list
    adverbs: list

    def sizes(self) -> dict:
        return {k: len(v) for k, v in vars(self).items()}


def _ranked(entries, keep, limit, min_len=1, max_len=6):
    best = {}
    for e in entries:
        if keep(e) and min_len <= len(e.base) <= max_len and everyday(e.base) and ":" not in e.base:
            if e.base not in best or e.cost < best[e.base]:
                best[e.base] = e.cost
    return [w for w, _ in sorted(best.items(), key=lambda kv: (kv[1], kv[0]))][:limit]


def _verbs(entries, limit):
    forms = defaultdict(dict)
    cost = {}
    for e in entries:
        if e.pos[:2] != ("動詞", "自立") or not (e.ctype.startswith("五段") or e.ctype == "一段"):
            continue
        if not everyday(e.base) or ":" in e.base or len(e.base) > 5 or is_katakana(e.base[0]):
            continue
        key = (e.base, e.ctype)
        forms[key].setdefault(e.cform, e.reading)
        cost[key] = min(cost.get(key, 1 << 30), e.cost)
    out, seen = [], set()
    for key in sorted(forms, key=lambda k: (cost[k], k)):
        f, (base, ctype) = forms[key], key
        if base in seen or not {"基本形", "連用形", "連用タ接続", "未然形"} <= set(f):
            continue
        surf = {k: conjugated_surface(base, f["基本形"], f[k]) for k in ("連用形", "連用タ接続", "未然形")}
        if None in surf.values() or surf["連用形"] == base:
            continue
        voiced = ctype.startswith(("五段・ガ行", "五段・バ行", "五段・マ行", "五段・ナ行"))
        out.append(Verb(base, surf["連用形"], surf["連用タ接続"], surf["未然形"], voiced))
        seen.add(base)
        if len(out) >= limit:
            break
    return out


def _adjectives(entries, limit):
    forms = defaultdict(dict)
    cost = {}
    for e in entries:
        if e.pos[:2] != ("形容詞", "自立") or not everyday(e.base) or len(e.base) > 5 or not e.base.endswith("い"):
            continue
        if is_katakana(e.base[0]):
            continue
        forms[e.base].setdefault(e.cform, e.reading)
        cost[e.base] = min(cost.get(e.base, 1 << 30), e.cost)
    out = []
    for base in sorted(forms, key=lambda b: (cost[b], b)):
        f = forms[base]
        if not {"基本形", "連用テ接続", "連用タ接続"} <= set(f):
            continue
        ku = conjugated_surface(base, f["基本形"], f["連用テ接続"])
        ta = conjugated_surface(base, f["基本形"], f["連用タ接続"])
        if ku and ta and ku.endswith("く") and ta.endswith("かっ"):
            out.append(Adjective(base, ku, ta))
        if len(out) >= limit:
            break
    return out


@lru_cache(maxsize=2)
def load_lexicon(path=None, scale: int = 1) -> Lexicon:
    """The generator's word lists; `scale` multiplies every list's size (tests use the default)."""
    entries = read_entries(path)
    n = lambda k: k * scale  # noqa: E731
    plain = lambda e: e.ctype == "*"  # noqa: E731
    kanji = kanji_word
    lex = Lexicon(
        nouns=_ranked(entries, lambda e: e.pos[:2] == ("名詞", "一般") and plain(e) and kanji(e.base), n(9000)),
        loanwords=_ranked(entries, lambda e: e.pos[0] == "名詞" and e.pos[1] in ("一般", "サ変接続")
                          and is_katakana(e.base), n(3000), 3, 8),
        sahen=_ranked(entries, lambda e: e.pos[:2] == ("名詞", "サ変接続") and kanji(e.base) and len(e.base) >= 2,
                      n(2500), 2, 4),
        na_adjectives=_ranked(entries, lambda e: e.pos[:2] == ("名詞", "形容動詞語幹") and not is_katakana(e.base[0]),
                              n(1200), 2, 5),
        places=_ranked(entries, lambda e: e.pos[:3] == ("名詞", "固有名詞", "地域") and kanji(e.base)
                       and e.pos[3] in ("一般", "国"), n(3000), 2, 4),
        surnames=_ranked(entries, lambda e: e.pos[2:4] == ("人名", "姓") and kanji(e.base), n(1500), 1, 3),
        given_names=_ranked(entries, lambda e: e.pos[2:4] == ("人名", "名"), n(800), 1, 3),
        verbs=_verbs(entries, n(2500)),
        adjectives=_adjectives(entries, n(500)),
        adverbs=_ranked(entries, lambda e: e.pos[0] == "副詞" and e.pos[1] in ("一般", "助詞類接続")
                        and not is_katakana(e.base[0]), n(600), 2, 6),
    )
    empty = [k for k, v in lex.sizes().items() if not v]
    if empty:
        raise AsrdemoError(f"{path or dictionary_path()}: no words found for {empty}; is it pyopenjtalk-plus's dictionary?")
    return lex
