"""The protobuf wire-format reader and writer of ONNX metadata_props (no onnx package at run time)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rs_ghost_qgis.core.errors import ModelError
from rs_ghost_qgis.core.model.onnx_meta import (
    encode_entry,
    fields,
    read_metadata,
    read_varint,
    replace_metadata,
    write_varint,
)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**14, 2**31 + 5, 2**63 - 1])
def test_varint_round_trip(value):
    encoded = write_varint(value)
    assert read_varint(encoded, 0) == (value, len(encoded))


def test_varint_matches_protobuf_examples():
    assert write_varint(1) == b"\x01"
    assert write_varint(150) == b"\x96\x01"  # the protobuf documentation's example


def test_entry_is_what_onnx_writes():
    model = onnx.ModelProto()
    model.metadata_props.add(key="clé", value="wert ✓")
    assert encode_entry("clé", "wert ✓") == model.SerializeToString()


def test_read_matches_onnxruntime(tiny_model):
    data = tiny_model.read_bytes()
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    assert read_metadata(data) == session.get_modelmeta().custom_metadata_map


def test_replace_round_trip_through_onnxruntime(tiny_model, tmp_path):
    data = tiny_model.read_bytes()
    meta = {"class_names": '["a", "b"]', "note": "ünïcode " * 500, "empty": ""}
    rewritten = replace_metadata(data, meta)
    path = tmp_path / "rewritten.onnx"
    path.write_bytes(rewritten)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == meta
    assert read_metadata(rewritten) == meta
    # Everything but the metadata is the same: the graph computes the same logits.
    original = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(session.run(None, {"input": batch})[0], original.run(None, {"input": batch})[0])
    kept = [data[s:e] for number, _, s, _, e in fields(data) if number != 14]
    assert [rewritten[s:e] for number, _, s, _, e in fields(rewritten) if number != 14] == kept
    # onnx agrees the file is valid and carries exactly the new entries.
    loaded = onnx.load_from_string(rewritten)
    onnx.checker.check_model(loaded)
    assert {p.key: p.value for p in loaded.metadata_props} == meta


def test_truncated_file_is_a_model_error(tiny_model):
    data = tiny_model.read_bytes()
    with pytest.raises(ModelError, match="truncated"):
        read_metadata(data[: len(data) - 7])


def test_other_wire_types_are_skipped():
    # field 1 varint, field 3 fixed64, field 4 fixed32, then one metadata entry
    data = b"\x08\x07" + b"\x19" + bytes(8) + b"\x25" + bytes(4) + encode_entry("k", "v")
    assert read_metadata(data) == {"k": "v"}
    assert replace_metadata(data, {"x": "y"}) == data[:16] + encode_entry("x", "y")


def test_expose_features_adds_the_classifier_input_as_an_output(tmp_path):
    from rs_ghost_qgis.core.model.onnx_meta import expose_features
    from tests.tiny_model import pooled_model, tiny_card

    base = pooled_model(tmp_path / "pooled.onnx", tiny_card())  # MatMul + Add reading the tensor 'features'
    exposed = expose_features(base.read_bytes())
    session = ort.InferenceSession(exposed, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "features"]
    batch = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    logits, features = session.run(None, {"input": batch})
    np.testing.assert_allclose(features, batch.mean(axis=(2, 3)), atol=1e-6)
    np.testing.assert_allclose(logits, features, atol=1e-6)  # identity weights, zero bias
    onnx.checker.check_model(onnx.load_from_string(exposed), full_check=True)
    assert read_metadata(exposed) == read_metadata(base.read_bytes())
    assert expose_features(exposed) is None  # already there


def test_expose_features_through_an_identity_node(tmp_path):
    import torch

    from rs_ghost_qgis.core.model.onnx_meta import expose_features
    from tests.tiny_model import TinyNet

    path = tmp_path / "old.onnx"  # exported as before the 'features' output existed: logits only
    sample = torch.zeros(1, 3, 32, 32)
    torch.onnx.export(
        TinyNet().eval(),
        (sample,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    exposed = expose_features(path.read_bytes())
    loaded = onnx.load_from_string(exposed)
    onnx.checker.check_model(loaded, full_check=True)
    assert [o.name for o in loaded.graph.output] == ["logits", "features"]
    assert loaded.graph.node[-1].op_type == "Identity" and loaded.graph.node[-1].output == ["features"]
    session = ort.InferenceSession(exposed, providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(2).normal(size=(2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"input": batch})[1], batch.mean(axis=(2, 3)), atol=1e-6)
