"""One normalisation for MMD bone and morph names, used wherever names are compared.

Real models spell the same morph several ways (shared/reference/mmd.md §2): ウィンク右 and
ウインク右, half-width ｳｨﾝｸ２右, 上半身2 and 上半身２, PMD names padded or ending in a line break.
`normalize_name` folds exactly these, in this order:

1. Unicode NFKC: half-width katakana become full-width (ｳｨﾝｸ → ウィンク, ｶﾞ → ガ); full-width
   digits, Latin letters and ASCII punctuation become ASCII (２ → 2, Ａ → A, ！ → !); the
   ideographic space becomes a plain space; other compatibility forms fold as NFKC defines.
2. Small kana become their large forms, in katakana and hiragana: ァィゥェォッャュョヮヵヶ,
   ぁぃぅぇぉっゃゅょゎゕゖ (so ウィンク and ウインク match).
3. Case folding (Blink = blink = BLINK; VRM and ARKit names differ only in case across tools).
4. Leading and trailing whitespace (spaces, tabs, line breaks, NUL padding) is removed.

It does not fold hiragana into katakana (まばたき and マバタキ stay different), nor long-vowel
marks (えー is not え), nor inner spaces: those are different names in real models.
"""

from __future__ import annotations

import unicodedata

SMALL_KANA = "ァィゥェォッャュョヮヵヶぁぃぅぇぉっゃゅょゎゕゖ"
LARGE_KANA = "アイウエオツヤユヨワカケあいうえおつやゆよわかけ"
_SMALL_TO_LARGE = str.maketrans(SMALL_KANA, LARGE_KANA)
_PADDING = " \t\r\n\x00\u3000"


def normalize_name(text: str) -> str:
    """The comparison key of a bone or morph name (see the module docstring for what it folds)."""
    folded = unicodedata.normalize("NFKC", text)
    folded = folded.translate(_SMALL_TO_LARGE)
    return folded.casefold().strip(_PADDING)


def same_name(a: str, b: str) -> bool:
    """Whether two names are variants of one name (ウィンク右 / ウインク右 / ｳｨﾝｸ右)."""
    return normalize_name(a) == normalize_name(b)


def find_name(names, wanted) -> int:
    """Index of the first of `names` that is the same name as `wanted`, or -1."""
    key = normalize_name(wanted)
    for i, name in enumerate(names):
        if normalize_name(name) == key:
            return i
    return -1


UNDECODABLE = "\ufffd"  # what a character the file's bytes cannot spell is shown as


def replace_undecodable(text):
    """`text` with each lone surrogate (half a UTF-16 character, or a byte that is not UTF-8,
    both kept by the readers so a file round-trips) replaced by U+FFFD, for places that need
    real text: Blender names, JSON meant for people."""
    if not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return "".join(UNDECODABLE if "\ud800" <= c <= "\udfff" else c for c in text)
