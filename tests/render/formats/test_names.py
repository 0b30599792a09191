"""Name variants seen in real models (shared/reference/mmd.md §2) fold to one key."""

import pytest

from tha_studio.render.formats.mmd.names import find_name, normalize_name, same_name


@pytest.mark.parametrize("a,b", [
    ("ウィンク右", "ウインク右"),          # small/large kana (巡音ルカ spells it with large イ)
    ("ウィンク２", "ｳｨﾝｸ2"),               # half-width kana, full-width digit
    ("ｳｨﾝｸ２右", "ウインク2右"),
    ("ｳィﾝｸ右２", "ウインク右2"),          # mixed half- and full-width
    ("上半身2", "上半身２"),
    ("ｶﾞｰﾝ", "ガーン"),                    # half-width voiced mark composes
    ("Blink", "blink"),
    ("ＢＬＩＮＫ", "blink"),                # full-width Latin
    ("体(上)\n", "体（上）"),               # PMD frame names end in a line break; full-width brackets
    ("  まばたき\u3000", "まばたき"),
    ("きゃ", "きや"),                        # small hiragana fold too
])
def test_variants_are_the_same_name(a, b):
    assert same_name(a, b)
    assert normalize_name(a) == normalize_name(b)


@pytest.mark.parametrize("a,b", [
    ("まばたき", "マバタキ"),   # hiragana and katakana stay different
    ("え", "えー"),             # classic models have えー, not え
    ("ウィンク", "ウィンク右"),
    ("あ", "お"),
    ("目 閉じ", "目閉じ"),      # inner spaces are kept
])
def test_different_names_stay_different(a, b):
    assert not same_name(a, b)


def test_normalize_is_idempotent_and_exact():
    assert normalize_name("ｳｨﾝｸ２右") == "ウインク2右"
    for text in ("ｳｨﾝｸ２右", "Ｅｙｅ Blink_L", "上半身２\n", "ゃゅょ"):
        assert normalize_name(normalize_name(text)) == normalize_name(text)


def test_find_name():
    names = ["まばたき", "ウインク右", "ｳｨﾝｸ２右"]
    assert find_name(names, "ウィンク右") == 1
    assert find_name(names, "ウィンク2右") == 2
    assert find_name(names, "笑い") == -1
