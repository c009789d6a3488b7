"""Shared fixtures: one torch thread, the real-data tier rule and a tiny exported model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("RS_GHOST_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Torch on one thread per module: the machine is shared, and oversubscribed threads spin."""
    import torch  # here, not at the top: the QGIS tests need no torch until a test does

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skipped with a reason when absent, a failure when CI=true."""
    path = SHARED_DATA.resolve()
    if not (path / "eurosat_rgb").is_dir() or not (path / "geotiff").is_dir():
        message = f"real-data tier needs {path} (EuroSAT RGB and the GeoTIFFs); it is not there"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true requires it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small scene classifier exported by our own training code (3 classes, 32 px, 10 m)."""
    from tests.tiny_model import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")
