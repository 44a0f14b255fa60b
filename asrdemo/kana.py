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
