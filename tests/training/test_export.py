import stat

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rs_ghost_qgis.core.model.card import ModelCard
from tests.tiny_model import TinyNet, export_tiny_model, tiny_card
from training.export import ExportError, export_onnx


def test_export_writes_one_readable_file_with_the_card(tmp_path):
    path = export_tiny_model(tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no side data file, no temp left
    assert path.stat().st_mode & stat.S_IROTH, "a shipped model must be readable by every user"
    session = ort.InferenceSession(str(path))
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map)
    assert card == tiny_card()
    logits = session.run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})[0]
    assert logits.shape == (5, 3)  # dynamic batch


class Unstable(TinyNet):
    """Traces with one offset and runs with another, as a graph that onnxruntime gets wrong would."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x) + float(self.calls)  # a Python number: frozen into the trace


def test_export_refuses_a_graph_that_does_not_reproduce_torch(tmp_path):
    with pytest.raises(ExportError, match="differ from torch"):
        export_onnx(Unstable(), tiny_card(), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
