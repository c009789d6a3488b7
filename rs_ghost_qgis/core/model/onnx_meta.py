"""Read and rewrite an ONNX file's metadata_props, and expose its pooled features, without the onnx package.

An ONNX file is one protobuf ``ModelProto``. Its ``metadata_props`` (field 14) is a repeated
``StringStringEntryProto`` (``{1: key, 2: value}``), where the model card lives. The plugin
runs where neither ``onnx`` nor ``protobuf`` is installed (a stock QGIS), so this module
reads the wire format itself: a varint tag (field number << 3 | wire type), then the value by
its wire type. Everything but field 14 is copied byte for byte; the new entries are appended
(protobuf readers accept fields in any order).

``expose_features`` adds a graph output ``features`` to a model exported without one: the
tensor its final classifier (``Gemm``, ``MatMul``, or ``MatMul`` + ``Add``) reads, through an
``Identity`` node appended to the graph (field 7: nodes are field 1, outputs field 12).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..errors import ModelError

METADATA_FIELD = 14  # ModelProto.metadata_props
GRAPH_FIELD = 7  # ModelProto.graph
_NODE, _INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12  # GraphProto fields
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_FLOAT = 1  # TensorProto.FLOAT


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it; ModelError when it runs past the end."""
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ModelError("The ONNX file is truncated or not a protobuf message (a varint runs past its end).")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def write_varint(value: int) -> bytes:
    """``value`` (0 or more) as a protobuf varint."""
    if value < 0:
        raise ValueError("varints here are never negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def fields(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """Each top-level field as (number, wire type, start of the tag, start of the value, end).

    For a length-delimited field (wire type 2) the value is ``data[value_start:end]``.
    """
    position = 0
    while position < len(data):
        start = position
        tag, position = read_varint(data, position)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _, end = read_varint(data, position)
        elif wire == _FIXED64:
            end = position + 8
        elif wire == _FIXED32:
            end = position + 4
        elif wire == _BYTES:
            length, position = read_varint(data, position)
            end = position + length
        else:
            raise ModelError(f"The ONNX file has a protobuf field of wire type {wire}, which ONNX never writes.")
        if end > len(data) or number == 0:
            raise ModelError("The ONNX file is truncated or not a protobuf message (a field runs past its end).")
        yield number, wire, start, position, end
        position = end


def read_metadata(data: bytes) -> dict[str, str]:
    """The metadata_props of the ONNX model ``data`` as a dict (a later key wins, as onnxruntime's does).

    ``data`` is the file's bytes, or the file mapped (mmap): only the top-level tags and the metadata are read.
    """
    meta: dict[str, str] = {}
    for number, wire, _, value_start, end in fields(data):
        if number == METADATA_FIELD and wire == _BYTES:
            key, value = _entry(data[value_start:end])
            meta[key] = value
    return meta


def _entry(data: bytes) -> tuple[str, str]:
    """(key, value) of one StringStringEntryProto."""
    found = {1: "", 2: ""}
    for number, wire, _, value_start, end in fields(data):
        if number in found and wire == _BYTES:
            found[number] = data[value_start:end].decode("utf-8")
    return found[1], found[2]


def encode_entry(key: str, value: str) -> bytes:
    """One metadata_props entry (field 14 of ModelProto) with its tag and length."""
    body = b""
    for number, text in ((1, key), (2, value)):
        raw = text.encode("utf-8")
        body += write_varint(number << 3 | _BYTES) + write_varint(len(raw)) + raw
    return write_varint(METADATA_FIELD << 3 | _BYTES) + write_varint(len(body)) + body


def replace_metadata(data: bytes, meta: Mapping[str, str]) -> bytes:
    """The ONNX model ``data`` with its metadata_props replaced by ``meta``; every other field kept as it was."""
    kept = bytearray()
    for number, wire, start, _, end in fields(data):
        if not (number == METADATA_FIELD and wire == _BYTES):
            kept += data[start:end]
    for key, value in meta.items():
        kept += encode_entry(str(key), str(value))
    return bytes(kept)


def _message(number: int, body: bytes) -> bytes:
    """A length-delimited field ``number`` holding ``body``."""
    return write_varint(number << 3 | _BYTES) + write_varint(len(body)) + body


def _strings(data: bytes, number: int) -> list[str]:
    """The values of the repeated string field ``number`` of a message."""
    return [data[v:e].decode("utf-8") for n, w, _, v, e in fields(data) if n == number and w == _BYTES]


def _submessages(data: bytes, number: int) -> list[bytes]:
    """The messages in field ``number`` of a message."""
    return [data[v:e] for n, w, _, v, e in fields(data) if n == number and w == _BYTES]


def _nodes(graph: bytes) -> list[tuple[str, list[str], list[str]]]:
    """(op_type, inputs, outputs) of each NodeProto (op_type 4, input 1, output 2) of a GraphProto."""
    return [(next(iter(_strings(n, 4)), ""), _strings(n, 1), _strings(n, 2)) for n in _submessages(graph, _NODE)]


def classifier_input(graph: bytes) -> str | None:
    """The tensor the classifier producing the graph's first output reads; None for another pattern."""
    outputs = [next(iter(_strings(v, 1)), "") for v in _submessages(graph, _GRAPH_OUTPUT)]
    producer = {output: (op, inputs) for op, inputs, outs in _nodes(graph) for output in outs}
    op, inputs = producer.get(outputs[0] if outputs else "", ("", []))
    if op in ("Gemm", "MatMul"):
        return inputs[0]
    if op == "Add":
        for name in inputs:
            before, before_inputs = producer.get(name, ("", []))
            if before == "MatMul":
                return before_inputs[0]
    return None


def expose_features(data: bytes, name: str = "features") -> bytes | None:
    """The model ``data`` with a float graph output ``name`` = the classifier's input; None when that cannot be done.

    None when the graph already has such an output, its classifier is not a recognised pattern,
    or another tensor already carries the name.
    """
    spans = [(s, v, e) for n, w, s, v, e in fields(data) if n == GRAPH_FIELD and w == _BYTES]
    if len(spans) != 1:
        return None
    start, value_start, end = spans[0]
    graph = data[value_start:end]
    outputs = [next(iter(_strings(v, 1)), "") for v in _submessages(graph, _GRAPH_OUTPUT)]
    source = classifier_input(graph)
    if source is None or name in outputs:
        return None
    extra = b""
    if source != name:
        taken = {out for _, _, outs in _nodes(graph) for out in outs}
        taken |= {next(iter(_strings(v, 1)), "") for v in _submessages(graph, _GRAPH_INPUT)}
        taken |= {next(iter(_strings(t, 8)), "") for t in _submessages(graph, _INITIALIZER)}  # TensorProto.name
        if name in taken:
            return None
        node = b"".join(_message(k, text.encode()) for k, text in ((1, source), (2, name), (3, f"rs_ghost_{name}")))
        extra += _message(_NODE, node + _message(4, b"Identity"))
    # TypeProto.tensor_type: float, shape (batch, features) with symbolic dims (TensorShapeProto.dim: dim_param 2)
    shape = b"".join(_message(1, _message(2, dim.encode())) for dim in ("batch", f"{name}_size"))
    tensor_type = _message(1, write_varint(1 << 3 | _VARINT) + write_varint(_FLOAT) + _message(2, shape))
    extra += _message(_GRAPH_OUTPUT, _message(1, name.encode()) + _message(2, tensor_type))
    return data[:start] + _message(GRAPH_FIELD, graph + extra) + data[end:]
