"""Object library label lookup: plural forms of the last word resolve like the singular."""
from __future__ import annotations

import pytest

from interactvlm_ros.objects import library


@pytest.mark.parametrize("label, category", [
    ("red cup", "cup"), ("red cups", "cup"), ("two cups", "cup"), ("Three Red Boxes", "box"),
    ("tennis rackets", "racket"), ("cups", "cup"), ("the soccer ball", "ball"),
])
def test_resolve_singularises_the_last_word(label, category):
    assert library().resolve(label) == category


@pytest.mark.parametrize("label, category", [
    ("knives", "knife"), ("Kitchen Knives", "knife"), ("shelves", "cabinet"), ("bòwl", "bowl"), ("Café Cups", "cup"),
])
def test_ves_plurals_and_accented_labels_resolve(label, category):
    """'knives' / 'shelves' were unknown (only s/es plurals were undone) and accented letters were deleted, not folded
    ('bòwl' → 'bwl')."""
    assert library().resolve(label) == category


@pytest.mark.parametrize("label, category", [
    ("soccer\tball", "ball"), ("coffee\nmug", "cup"), ("cup/mug", "cup"), ("tennis.ball", "ball"),
    ('"the ball"', "ball"), ("the cup's", "cup"),
])
def test_marks_and_spaces_between_words_separate_them(label, category):
    """A tab, newline or mark between two words deleted it: 'soccer\tball' → 'soccerball', 'cup/mug' → 'cupmug' —
    the generic stand-in mesh, while the default model (which reads the words) knew the label."""
    assert library().resolve(label) == category
    assert library().lookup(label).known is True


def test_unknown_labels_stay_unknown():
    assert library().resolve("zorblax") is None and library().resolve("two zorblaxes") is None
    assert library().lookup("two zorblaxes").known is False
    assert library().resolve("wolves") is None
    assert library().resolve("カップ") is None  # another script: unknown (lookup flags it)


def test_every_library_mesh_is_metric():
    """The library's meshes are in metres (reconstruction sizes objects by them): the longest side of each file is a
    real object's (3 cm – 2.5 m) and is what catalog.json says. genesis-world's camera (4.88 units long) and chopping
    board (7.03) used to be copied in their own units."""
    import numpy as np

    from interactvlm_ros.objects import load_mesh

    lib = library()
    for name, e in lib.entries.items():
        m = load_mesh(lib.catalog_path.parent / e["file"])
        ext = np.asarray(m.vertices).max(0) - np.asarray(m.vertices).min(0)
        assert 0.03 <= ext.max() <= 2.5, (name, ext)
        np.testing.assert_allclose(ext, e["extent_m"], atol=1e-3, err_msg=name)
    assert max(lib.entries["camera"]["extent_m"]) == pytest.approx(0.14)
