"""Names of the files and folders THA Studio makes from a user's names, as every system can make them."""

import pytest

from tha_studio.atomic_files import portable_name


@pytest.mark.parametrize("name, portable", [
    ("CON", "CON_"), ("nul", "nul_"), ("Aux", "Aux_"), ("PRN", "PRN_"), ("COM1", "COM1_"), ("lpt9", "lpt9_"),
    ("COM\u00b9", "COM\u00b9_"),  # (Windows keeps the superscript ports too)
    ("con.wav", "con_.wav"), ("NUL.tar.gz", "NUL_.tar.gz"), ("CON .wav", "CON _.wav"),  # any extension
    ("voice.", "voice._"), ("take ", "take _"),  # Windows drops a last dot or space
    ("take:1?.wav", "take_1_.wav"), ('a<b>"c"|d*\te.ogg', "a_b__c__d__e.ogg"),  # (a Linux name; not on Windows)
])
def test_a_name_windows_keeps_for_a_device_or_cannot_end_with_gets_an_underscore(name, portable):
    assert portable_name(name) == portable


@pytest.mark.parametrize("name", ["Anna", "Anna_001", "CONSOLE", "COM0", "COM10", "x.con", "Connie.wav", "ミク",
                                  "a.b"])
def test_any_other_name_is_left_as_it_is(name):
    assert portable_name(name) == name
