"""OpenAPI descriptions of the routes whose bodies are parsed by hand (no pydantic models).

The request schemas are built from the model's signature, so clients and fuzzers
(schemathesis) see the real dtype and shape constraints.
"""

from __future__ import annotations

from typing import Any

from torchbridge.serving.schemas import Signature, TensorSpec

_ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed request (not JSON, wrong structure, unparsable HTTP), or a Host "
                "header that does not name this server"),
    401: _error("Missing or invalid API key"),
    403: _error("The API key lacks the role this route needs"),
    404: _error("Unknown model name"),
    408: _error("Request headers or body not received within read_timeout_s (the "
                "connection is closed)"),
    413: _error("Body larger than the server's limit"),
    415: _error("Body type refused: compressed bodies; without API keys anything but "
                "application/json or a v2 binary request"),
    422: _error("Tensors do not match the model's input signature"),
    429: _error("Rate limit exceeded (see Retry-After)"),
    500: _error("The model raised, or its output cannot be answered truthfully (a "
                "non-finite value in JSON, a wrong row count; the body names the output); "
                "the server keeps serving"),
    503: _error("Queue full, model not ready, inference worker died, or too many "
                "connections (see Retry-After)"),
    504: _error("The request's deadline passed"),
}
PROBE: dict[int | str, dict[str, Any]] = {503: _error("Not ready")}
METRICS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format", "content": {"text/plain": {}}},
    401: ERRORS[401], 403: ERRORS[403]}


def _number(spec: TensorSpec) -> dict[str, Any]:
    kind = spec.datatype
    if kind == "BOOL":
        return {"type": "boolean"}
    if kind.startswith(("INT", "UINT")):
        return {"type": "integer"}
    return {"type": "number"}


def tensor_schema(spec: TensorSpec) -> dict[str, Any]:
    """Nested arrays with the spec's fixed dims as exact lengths and ranges as bounds."""
    schema = _number(spec)
    if not spec.shape:
        return {"type": "array", "minItems": 1, "items": {}}
    for axis in reversed(range(len(spec.shape))):
        size = spec.shape[axis]
        array: dict[str, Any] = {"type": "array", "items": schema}
        if size >= 0:
            array["minItems"] = array["maxItems"] = size
        else:
            low, high = spec.ranges.get(axis, (0, None))
            array["minItems"] = low
            if high is not None:
                array["maxItems"] = high
        schema = array
    return schema


def predict(sig: Signature) -> dict[str, Any]:
    if len(sig.inputs) == 1:
        inputs: dict[str, Any] = tensor_schema(sig.inputs[0])
    else:
        inputs = {"type": "object", "required": sig.names(),
                  "properties": {s.name: tensor_schema(s) for s in sig.inputs}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["inputs"], "properties": {"inputs": inputs}}}}}}


def generate(vocab: int | None, max_new_tokens: int, max_prompts: int) -> dict[str, Any]:
    """The ``/generate`` body: token ids within the vocabulary, bounded generation."""
    token: dict[str, Any] = {"type": "integer", "minimum": 0}
    if vocab is not None:
        token["maximum"] = vocab - 1
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["input_ids"], "properties": {
            "input_ids": {"oneOf": [
                {"type": "array", "minItems": 1, "items": token},
                {"type": "array", "minItems": 1, "maxItems": max_prompts, "items": {
                    "type": "array", "minItems": 1, "items": token}}]},
            "max_new_tokens": {"type": "integer", "minimum": 0, "maximum": max_new_tokens},
            "eos_token_id": {"type": ["integer", "null"], "minimum": 0},
            "stream": {"type": "boolean"}}}}}}}
GENERATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"description": "Tokens as JSON, or server-sent events when stream is true",
          "content": {"application/json": {}, "text/event-stream": {}}}}

V2_INFER: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string"},
                    "data": {"type": "array"}}}},
            "outputs": {"type": "array", "items": {"type": "object"}}}}}}}}
