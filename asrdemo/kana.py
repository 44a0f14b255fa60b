"""Katakana readings of Japanese text, for the kana CER beside the character CER.

A recognizer that writes kanji can be wrong in two ways: the wrong sound (a reading error:
「買う」 for 「貸す」) or the right sound in the wrong characters (a spelling error: 「飼う」 for 「買う」,
both カウ). Scoring the readings of reference and hypothesis separates the two: errors that
disappear in the kana CER are spelling only. The readings come from pyopenjtalk's g2p (the
project's synthesis front end, the `mini` extra): `pyopenjtalk.g2p(text, kana=True)`, the
pronunciation (は as ワ, long vowels as ー), punctuation kept as pauses (、。).
"""

import functools


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


# The reading CTC's vocabulary (`reading_ctc_weight` in docs/model.md): <blank>, the katakana
# ァ..ヴ, the long-vowel mark and the pauses pyopenjtalk writes as punctuation. Fixed in code, so
# a model's reading head has the same meaning in every exp dir (no token list to ship).
READING_TOKENS = ("<blank>",) + tuple(chr(c) for c in range(0x30A1, 0x30F5)) + ("ー", "、", "。", "？")
_READING_IDS = {t: i for i, t in enumerate(READING_TOKENS)}


def reading_ids(text: str) -> list:
    """Text -> the ids of its reading in `READING_TOKENS` (a character outside them, rare in
    pyopenjtalk's output, is left out). Raises ImportError without pyopenjtalk."""
    return [_READING_IDS[c] for c in to_kana(text) if c in _READING_IDS]
