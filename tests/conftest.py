"""Shared test fixtures.

``shared_dir`` is the workplace's ``shared/`` folder (conformance vectors, real photos, meshes):
``$INTERACTVLM_SHARED_DIR`` or ``<repo>/../shared``. Tests that need it fail loudly when it is
missing in CI (CI always has it beside the clone) and skip on a developer machine without it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"

# Keep every cache of the test session inside a temp dir (never the user's ~/.cache).
os.environ.setdefault("INTERACTVLM_CACHE_DIR", str(REPO / ".cache" / "test-cache"))


def _shared() -> Path | None:
    env = os.environ.get("INTERACTVLM_SHARED_DIR")
    cand = Path(env) if env else REPO.parent / "shared"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _shared()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("shared/ (conformance vectors) not found beside the clone; set INTERACTVLM_SHARED_DIR")
        pytest.skip("shared/ not available on this machine")
    return path


@pytest.fixture(scope="session")
def conformance_dir(shared_dir: Path) -> Path:
    return shared_dir / "conformance"


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA
