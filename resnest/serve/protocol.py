"""KServe v2 (Open Inference Protocol) request parsing and response building.

Supports the JSON form and the binary-data extension (``Inference-Header-Content-Length``: a
JSON header followed by raw tensor bytes, ``parameters.binary_data_size`` per input), which is
what fast clients (Triton's, KServe's) send for large FP32 tensors.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnest.serve.errors import InferenceError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class TensorInput:
    """One decoded request input: either an FP32 batch or a list of encoded images."""

    fp32: np.ndarray | None = None
    images: list[bytes] | None = None
    request_id: str | None = None


def _split_binary(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """Split a body into its JSON header and the binary tail (empty without the extension)."""
    if header_length is None:
        json_part, tail = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise InferenceError(
                400, f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
            ) from None
        if not 0 < length <= len(body):
            raise InferenceError(
                400, f"Inference-Header-Content-Length {length} is outside the body (0, {len(body)}]"
            )
        json_part, tail = body[:length], body[length:]
    try:
        header = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InferenceError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InferenceError(400, "request body must be a JSON object with an 'inputs' list")
    return header, tail


def _check_shape(shape: Any, crop_size: int, max_batch: int) -> list[int]:
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                            for d in shape)):
        raise InferenceError(400, f"input 'shape' must be a list of integers, got {shape!r}")
    if len(shape) != 4 or shape[1:] != [3, crop_size, crop_size]:
        raise InferenceError(
            400, f"FP32 input shape must be [B, 3, {crop_size}, {crop_size}], got {shape}"
        )
    if not 1 <= shape[0] <= max_batch:
        raise InferenceError(400, f"batch size {shape[0]} is outside [1, {max_batch}]")
    return shape


def _decode_bytes_elements(raw: bytes) -> list[bytes]:
    """Binary BYTES tensors are 4-byte little-endian lengths, each followed by that many bytes."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise InferenceError(400, "binary BYTES input is truncated (incomplete length prefix)")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise InferenceError(400, "binary BYTES input is truncated (element past the end)")
        out.append(raw[pos:pos + size])
        pos += size
    return out


def parse_infer_request(
    body: bytes, header_length: str | None, crop_size: int, max_batch: int
) -> TensorInput:
    """Validate a v2 infer request and return its single input, or raise a 400."""
    header, tail = _split_binary(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InferenceError(400, f"'inputs' must be a list with exactly one tensor named "
                                  f"{INPUT_NAME!r}")
    outputs = header.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or any(
            not isinstance(o, dict) or o.get("name") != OUTPUT_NAME for o in outputs
        ):
            raise InferenceError(400, f"the only output is {OUTPUT_NAME!r}, got {outputs!r}")
        if any((o.get("parameters") or {}).get("binary_data") for o in outputs):
            raise InferenceError(400, "binary output is not supported; outputs are JSON")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferenceError(400, "'id' must be a string")
    spec = inputs[0]
    if spec.get("name") != INPUT_NAME:
        raise InferenceError(400, f"input must be named {INPUT_NAME!r}, got {spec.get('name')!r}")
    datatype = spec.get("datatype")
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise InferenceError(400, "input 'parameters' must be an object")
    binary_size = params.get("binary_data_size")
    if binary_size is not None:
        if not isinstance(binary_size, int) or binary_size != len(tail):
            raise InferenceError(
                400, f"binary_data_size {binary_size!r} does not match the {len(tail)} bytes sent"
            )
    elif tail:
        raise InferenceError(400, "binary data sent but the input has no binary_data_size")

    if datatype == "FP32":
        shape = _check_shape(spec.get("shape"), crop_size, max_batch)
        count = shape[0] * 3 * crop_size * crop_size
        if binary_size is not None:
            if len(tail) != count * 4:
                raise InferenceError(
                    400, f"FP32 shape {shape} needs {count * 4} bytes, got {len(tail)}"
                )
            array = np.frombuffer(tail, dtype="<f4").astype(np.float32, copy=False)
        else:
            data = spec.get("data")
            if not isinstance(data, list):
                raise InferenceError(400, "FP32 input needs a 'data' list (or binary data)")
            try:
                array = np.asarray(data)
            except (ValueError, TypeError) as exc:
                raise InferenceError(400, f"FP32 data is not a list of numbers: {exc}") from None
            if array.dtype.kind not in "fiu":  # strings, null, booleans, ragged lists
                raise InferenceError(400, "FP32 data is not a list of numbers "
                                          f"(found {array.dtype.name} values)")
            array = array.astype(np.float32)
            if array.size != count:
                raise InferenceError(
                    400, f"FP32 shape {shape} needs {count} values, got {array.size}"
                )
        return TensorInput(fp32=array.reshape(shape), request_id=request_id)

    if datatype == "BYTES":
        shape = spec.get("shape")
        if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)
                and 1 <= shape[0] <= max_batch):
            raise InferenceError(400, f"BYTES input shape must be [N] with 1 <= N <= {max_batch}, "
                                      f"got {shape!r}")
        if binary_size is not None:
            images = _decode_bytes_elements(tail)
        else:
            data = spec.get("data")
            if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
                raise InferenceError(400, "BYTES data must be a list of base64 strings")
            try:
                images = [base64.b64decode(d, validate=True) for d in data]
            except (binascii.Error, ValueError) as exc:
                raise InferenceError(400, f"BYTES data is not valid base64: {exc}") from None
        if len(images) != shape[0]:
            raise InferenceError(400, f"BYTES shape {shape} but {len(images)} elements sent")
        return TensorInput(images=images, request_id=request_id)

    raise InferenceError(400, f"unsupported datatype {datatype!r}; use FP32 or BYTES")


def infer_response(model_name: str, logits: np.ndarray, request_id: str | None) -> dict[str, Any]:
    """The v2 response body for one request's logits."""
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": "1",
        "outputs": [{
            "name": OUTPUT_NAME,
            "datatype": "FP32",
            "shape": list(logits.shape),
            "data": logits.astype(np.float32).ravel().tolist(),
        }],
    }
    if request_id is not None:
        body["id"] = request_id
    return body
