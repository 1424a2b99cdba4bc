"""Shared test fixtures.

``shared_dir`` is the workplace's ``shared/`` folder (conformance vectors, real photos, meshes):
``$INTERACTVLM_SHARED_DIR`` or ``<repo>/../shared``. Tests that need it fail loudly when it is
missing in CI (CI always has it beside the clone) and skip on a developer machine without it.
"""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def node_under_test(domain: int, params: dict, log: Path, outputs=None, remaps=None, wait_image_subscriber=True,
                    load_timeout: float = 240.0):
    """The contact node as a subprocess on its own ROS domain (localhost only) and a ContactClient beside it:
    yields (process, client) once the node reports ``running``; stops both afterwards and checks the exit code."""
    from interactvlm_ros.ros.listener import ContactClient, start_node_process, stop_process

    mp = pytest.MonkeyPatch()
    for k, v in (("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"), ("ROS_LOCALHOST_ONLY", "1"),
                 ("ROS_DOMAIN_ID", str(domain))):
        mp.setenv(k, v)
    proc = start_node_process(domain, params, log, remaps=remaps)
    client = ContactClient(domain_id=domain, **({"outputs": outputs} if outputs else {}))
    try:
        d = client.wait_state("running", load_timeout)
        assert d.get("state") == "running", f"node did not start: {d} / {log.read_text()[-3000:]}"
        if wait_image_subscriber:
            assert client.wait_subscribers(10.0)
        yield proc, client
    finally:
        client.close()
        code = stop_process(proc)
        mp.undo()
        assert code in (0, -2, 130), f"node exit code {code}: {log.read_text()[-2000:]}"


@pytest.fixture(scope="session")
def contact_node():
    """:func:`node_under_test` for the modules that test the node over Fast DDS (their module-scoped fixtures)."""
    return node_under_test


@pytest.fixture
def stub_tensorrt(monkeypatch):
    """``install(fake) -> seen``: TensorRT without a GPU for the runtime's engine path. ``build_engines`` runs for real
    with ``fake``'s injections (cache, build_fn, validate_fn, trt_version, gpu ...) and records its results in ``seen``
    ({graph: result}); ``TensorRTEngine`` is a stub that keeps its name, device and precision and cannot run."""
    import interactvlm_ros.export.tensorrt_build as TB
    import interactvlm_ros.runtime.trt_engine as TE
    from interactvlm_ros.runtime.base import Engine

    class StubTRT(Engine):
        def __init__(self, path, name=None, device="cuda", precision="fp16"):
            super().__init__(name=name, backend="tensorrt", device=device, precision=precision)

        def _run(self, inputs):
            raise NotImplementedError

    def install(fake: dict) -> dict:
        seen, real = {}, TB.build_engines
        monkeypatch.setattr(TB, "build_engines", lambda *a, **k: seen.update(real(*a, **{**k, **fake})) or dict(seen))
        monkeypatch.setattr(TE, "TensorRTEngine", StubTRT)
        return seen

    return install
