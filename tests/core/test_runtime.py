import dataclasses

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from rs_ghost_qgis.core.errors import ModelError
from rs_ghost_qgis.core.model.runtime import default_model_path, load_model, softmax
from tests.tiny_model import TinyNet, pooled_model, tiny_card
from training.export import export_onnx


def test_loads_model_and_card(tiny_model):
    model = load_model(tiny_model, threads=1)
    assert model.card.class_names == ["Water", "Forest", "Crop"]
    assert model.provider == "CPUExecutionProvider"
    assert model.session.get_session_options().intra_op_num_threads == 1
    batch = np.zeros((5, 3, 32, 32), np.float32)
    batch[:, 2] = 2.0  # blue -> Water
    probs = model.predict(batch)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs.argmax(axis=1) == 0).all()


def test_softmax_is_stable_for_huge_logits():
    probs = softmax(np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]], np.float32))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, atol=1e-6)


def test_model_that_already_outputs_probabilities_is_not_softmaxed_twice(tiny_model, tmp_path):
    with_softmax = export_onnx(
        torch.nn.Sequential(TinyNet(), torch.nn.Softmax(dim=1)), tiny_card(), tmp_path / "p.onnx"
    )
    batch = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(
        load_model(with_softmax).predict(batch), load_model(tiny_model).predict(batch), atol=1e-5
    )


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")


@pytest.mark.parametrize("content", [b"not an onnx model at all", b"\x08\x07\x12\x04junk" * 3])
def test_corrupt_onnx(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_model(path)


def test_truncated_onnx(tiny_model, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_model.read_bytes()[:300])
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_model(path)


def test_onnx_without_card_names_missing_keys_and_fix(tiny_model, tmp_path):
    graph = onnx.load(str(tiny_model))
    del graph.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(graph, str(path))
    with pytest.raises(ModelError) as error:
        load_model(path)
    message = str(error.value)
    assert "class_names" in message and "gsd_m" in message and "metadata_props" in message
    assert "python -m training export" in message


def _flat_model(path, card):
    """A valid ONNX classifier whose input is (N, 3072), not NCHW."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3072, 3], np.zeros(3072 * 3, np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3072])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in card.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_input_not_nchw(tmp_path):
    with pytest.raises(ModelError, match="not N x C x H x W"):
        load_model(_flat_model(tmp_path / "flat.onnx", tiny_card()))


def test_class_count_disagreeing_with_card(tmp_path):
    card = dataclasses.replace(
        tiny_card(), class_names=["a", "b", "c", "d"], class_colors=["#000000", "#111111", "#222222", "#333333"]
    )
    path = export_onnx(TinyNet(), card, tmp_path / "four.onnx")
    with pytest.raises(ModelError, match="lists 4 classes"):
        load_model(path)


def test_input_size_disagreeing_with_card(tmp_path):
    path = export_onnx(TinyNet(), tiny_card(), tmp_path / "m.onnx")
    graph = onnx.load(str(path))
    for prop in graph.metadata_props:
        if prop.key == "input_size":
            prop.value = "48"
    onnx.save(graph, str(path))
    with pytest.raises(ModelError, match="model card says 3 bands of 48 x 48"):
        load_model(path)


def test_default_model_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(ModelError) as error:
        default_model_path((tmp_path / "a", tmp_path / "b"))
    assert "not there yet" in str(error.value) and "make train" in str(error.value) and "--model" in str(error.value)


def test_default_model_prefers_default_txt_then_first_file(tmp_path):
    package, repo = tmp_path / "pkg", tmp_path / "repo"
    repo.mkdir()
    (repo / "b.onnx").write_bytes(b"")
    (repo / "a.onnx").write_bytes(b"")
    assert default_model_path((package, repo)) == repo / "a.onnx"
    (repo / "default.txt").write_text("b.onnx\n")
    assert default_model_path((package, repo)) == repo / "b.onnx"
    package.mkdir()
    (package / "z.onnx").write_bytes(b"")  # the installed plugin's own copy wins
    assert default_model_path((package, repo)) == package / "z.onnx"


@pytest.mark.parametrize("bias", [float("nan"), float("inf")])
def test_model_with_non_finite_outputs_is_refused_at_load(tmp_path, bias):
    path = pooled_model(tmp_path / "broken.onnx", tiny_card(), bias=bias)
    with pytest.raises(ModelError, match=r"broken\.onnx outputs NaN or infinite values for 1 of 1 blank test tile"):
        load_model(path)


def test_non_finite_probabilities_in_a_batch_fail_instead_of_becoming_class_0(tmp_path):
    model = load_model(pooled_model(tmp_path / "sqrt.onnx", tiny_card(), sqrt=True))  # the blank tile is fine
    batch = np.ones((4, 3, 32, 32), np.float32)
    assert np.isfinite(model.predict(batch)).all()
    batch[1:3] = -1.0  # square roots of negative means
    with pytest.raises(ModelError, match=r"sqrt\.onnx outputs NaN or infinite values for 2 of 4 tile"):
        model.predict(batch)
