"""Read and rewrite an ONNX file's metadata_props without the onnx package.

An ONNX file is one protobuf ``ModelProto``. Its ``metadata_props`` (field 14) is a repeated
``StringStringEntryProto`` (``{1: key, 2: value}``), where the model card lives. The plugin
runs where neither ``onnx`` nor ``protobuf`` is installed (a stock QGIS), so this module
reads the top-level fields of the wire format itself: a varint tag (field number << 3 | wire
type), then the value by its wire type. Everything but field 14 is copied byte for byte;
the new entries are appended (protobuf readers accept fields in any order).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .errors import ModelError

METADATA_FIELD = 14  # ModelProto.metadata_props
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


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
    """The metadata_props of the ONNX model ``data`` as a dict (a later key wins, as onnxruntime's does)."""
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
