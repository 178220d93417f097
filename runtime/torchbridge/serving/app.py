"""``create_fastapi_server``: the FastAPI application that serves one model.

Routes: ``POST /predict``, ``POST /generate`` (models with ``stream``/``generate``),
``GET /health`` (liveness), ``GET /ready`` (503 until loaded and warmed up), ``GET /metrics``
(Prometheus text), and the Open Inference Protocol v2 routes (``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/{name}``, ``/v2/models/{name}/ready``,
``/v2/models/{name}/infer``). OpenAPI at ``/openapi.json``.

Request bodies are parsed with orjson straight from bytes (no pydantic models on the hot
path); tensors are validated against the model's signature, batched by the worker thread,
and answered with bodies the worker has already serialised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import orjson
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from torchbridge import __version__
from torchbridge.core.subject import InputSpec, resolve_dims
from torchbridge.serving import openapi, routes, v2
from torchbridge.serving.config import ServerConfig
from torchbridge.serving.errors import ApiError, error_body, error_response
from torchbridge.serving.generate import GenerateRequest, Generation, vocab_size
from torchbridge.serving.metrics import CONTENT_TYPE
from torchbridge.serving.middleware import FastHandler, RequestInfo, ServingMiddleware
from torchbridge.serving.padding import declared_padding
from torchbridge.serving.schemas import (
    InvalidInput,
    Signature,
    describe,
    parse_predict,
    signature,
)
from torchbridge.serving.state import ServingState

log = logging.getLogger("torchbridge.serving")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
JSON = "application/json"


def create_fastapi_server(model: Any, config: ServerConfig | None = None, *,
                          sample_input: Any = None,
                          input_spec: InputSpec | Mapping[str, Any] | None = None,
                          title: str = "TorchBridge model server") -> FastAPI:
    """A FastAPI app serving ``model`` with dynamic batching, limits, auth and metrics.

    ``sample_input`` (a tensor, tuple or dict of tensors, as the model takes them) gives
    the input signature that requests are validated against and is used to warm the model
    up before ``/ready`` turns 200; ``input_spec`` marks the batch dim and named dynamic
    dims with their ranges. Without a sample, any float32 array with a batch dim is
    accepted and the server is ready without warm-up (a warning says so). A model that is
    an ``nn.Module`` is put in eval mode and moved to ``config.device``.

    Example::

        app = create_fastapi_server(model, ServerConfig(max_batch_size=32),
                                    sample_input=torch.randn(1, 256))
        run_server(app, host="127.0.0.1", port=8000)
    """
    config = config or ServerConfig()
    if isinstance(model, torch.nn.Module):
        model = model.to(config.device).eval()
    spec = InputSpec.coerce(input_spec)
    if sample_input is not None:  # a dim on input_ids is shared by the mask, as in checks
        spec, _ = resolve_dims(spec, sample_input)
    sig = signature(sample_input, spec, config.max_batch_size)
    padding = declared_padding(model, spec, sig) if sample_input is not None else None
    state = ServingState(model, config, sig, sample_input, padding)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title=title, version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.tb = state
    fast: dict[tuple[str, str], FastHandler] = {}
    app.add_middleware(ServingMiddleware, state=state, fast_routes=fast)
    _add_error_handlers(app)
    _add_probe_routes(app, state)
    _add_inference_routes(app, state, fast)
    _add_v2_routes(app, state, fast)
    routes.verify(route.path for route in app.routes if hasattr(route, "path"))
    return app


def serving_state(app: Any) -> ServingState:
    """The :class:`ServingState` behind an app made by :func:`create_fastapi_server`."""
    return app.state.tb


# ---------------------------------------------------------------------- helpers
class DirectRoute(APIRoute):
    """An ``APIRoute`` whose endpoint takes the ``Request`` and returns the ``Response``.

    OpenAPI documents it like any route (request body and responses come from
    ``openapi_extra`` and ``responses``), but a request skips FastAPI's dependency solving
    and pydantic validation: the endpoint parses the body with orjson and validates the
    tensors against the model's signature itself. This is the inference hot path.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handler


def direct(app: FastAPI, path: str, **options: Any) -> Callable[[Any], Any]:
    """``@app.post(path, ...)`` with :class:`DirectRoute`."""

    def register(endpoint: Any) -> Any:
        app.router.add_api_route(path, endpoint, methods=["POST"],
                                 route_class_override=DirectRoute, **options)
        return endpoint

    return register


def json_response(content: bytes, status: int = 200, batched_with: int = 0) -> Response:
    """A JSON response; ``batched_with`` (when set) becomes the ``X-Batched-With`` header:
    how many requests shared the forward pass that answered this one (1 = it ran alone)."""
    headers = {"X-Batched-With": str(batched_with)} if batched_with else None
    return Response(content, status_code=status, media_type=JSON, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body; 413 past ``limit`` bytes (also for chunked bodies)."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 413 past ``limit`` bytes (also for chunked bodies), 400 if invalid."""
    try:
        return orjson.loads(await read_body(request, limit))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None


def disconnect_probe(request: Request) -> Callable[[], bool] | None:
    """A cheap 'has the client gone?' for the worker thread, where the server offers one.

    uvicorn's request cycle keeps a ``disconnected`` flag; reading it needs no task per
    request. Elsewhere the worker cannot tell and the request runs to its deadline.
    """
    receive = request.receive
    cycle = getattr(receive, "__self__", None) or getattr(receive, "cycle", None)
    if cycle is not None and isinstance(getattr(cycle, "disconnected", None), bool):
        return lambda: bool(cycle.disconnected)
    return None


def _info(request: Request) -> RequestInfo:
    return request.scope["tb"]


def _note_inputs(info: RequestInfo, arrays: list[Any], sig: Signature, payloads: bool) -> None:
    # Described only if a log line is written: the description costs more than the rest
    # of the request's bookkeeping.
    def inputs() -> dict[str, Any]:
        described = describe(arrays, sig)
        if payloads:
            for spec, array in zip(sig.inputs, arrays, strict=False):
                described[spec.name]["values"] = array.tolist()
        return described

    info.inputs = inputs


# ---------------------------------------------------------------------- routes
def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return Response(error_body(str(exc.detail)), status_code=exc.status_code,
                        media_type=JSON, headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                             for e in exc.errors())
        return Response(error_body(problems or "invalid request"), status_code=422,
                        media_type=JSON)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(InvalidInput, api_error)


def _add_probe_routes(app: FastAPI, state: ServingState) -> None:
    @app.get("/health", tags=["probes"], responses=openapi.PROBE)
    async def health() -> Response:
        """Liveness: 200 while the process can serve (it may still be warming up); 503 once
        its inference worker died (the process then exits for a restart)."""
        dead = state.dead()
        if dead:
            return Response(error_body(dead), status_code=503, media_type=JSON)
        return json_response(orjson.dumps({"status": "alive"}))

    @app.get("/ready", tags=["probes"], responses=openapi.PROBE)
    async def ready() -> Response:
        """Readiness: 200 once the model is loaded and warmed up, else 503."""
        dead = state.dead()
        if state.ready and not dead:
            return json_response(orjson.dumps({"status": "ready"}))
        return Response(error_body(f"not ready: {dead or state.public_not_ready_reason}"),
                        status_code=503, media_type=JSON, headers={"Retry-After": "1"})

    @app.get("/metrics", tags=["observability"], responses=openapi.METRICS)
    async def metrics() -> Response:
        """Prometheus text exposition (role ``admin`` when API keys are configured)."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def _add_inference_routes(app: FastAPI, state: ServingState,
                          fast: dict[tuple[str, str], FastHandler]) -> None:
    config = state.config

    @direct(app, "/predict", tags=["inference"], responses=openapi.ERRORS,
            openapi_extra=openapi.predict(state.sig))
    async def predict(request: Request) -> Response:
        """Run the model on JSON tensors: ``{"inputs": [[...]]}`` (batch dim included), or
        ``{"inputs": {"name": [[...]], ...}}`` for models with several inputs."""
        state.require_ready()
        info = _info(request)
        batcher = state.batcher
        batcher.arriving()
        try:
            deadline = state.deadline(info.start, request.headers.get("x-request-timeout"))
            arrays = parse_predict(await read_json(request, config.max_body_bytes), state.sig)
            _note_inputs(info, arrays, state.sig, config.log_payloads)
            work = state.enqueue(arrays, deadline, state.encode_predict,
                                 disconnect_probe(request), announced=True)
        except BaseException:
            batcher.withdraw()
            raise
        info.rows = work.rows
        body = await state.wait(work)
        return json_response(body, batched_with=work.batched_with)

    fast[("POST", "/predict")] = FastHandler(predict, {})
    if state.generator is None:
        return

    @direct(app, "/generate", tags=["inference"], responses=openapi.GENERATE_RESPONSES,
            openapi_extra=openapi.generate(vocab_size(state.model), config.max_new_tokens,
                                           config.max_batch_size))
    async def generate(request: Request) -> Response:
        """Generate tokens: one JSON body, or server-sent events with ``"stream": true``."""
        state.require_ready()
        info = _info(request)
        deadline = state.deadline(info.start, request.headers.get("x-request-timeout"))
        body = GenerateRequest(await read_json(request, config.max_body_bytes), state)
        info.rows = len(body.input_ids)
        info.inputs = {"input_ids": {"shape": [len(body.input_ids), len(body.input_ids[0])],
                                     "dtype": "int64"}}
        job = Generation(state, body, deadline, info.start)
        if body.stream:
            return StreamingResponse(job.events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return json_response(await job.collect())


def _add_v2_routes(app: FastAPI, state: ServingState,
                   fast: dict[tuple[str, str], FastHandler]) -> None:
    config = state.config

    def check_name(name: str) -> None:
        if name != config.model_name:
            raise ApiError(404, f"unknown model {name!r}; this server serves "
                                f"{config.model_name!r}")

    @app.get("/v2", tags=["v2"], responses=openapi.ERRORS)
    async def server_metadata() -> Response:
        """Open Inference Protocol v2 server metadata."""
        return json_response(orjson.dumps({"name": "torchbridge", "version": __version__,
                                           "extensions": ["binary_tensor_data"]}))

    @app.get("/v2/health/live", tags=["v2"], responses=openapi.PROBE)
    async def v2_live() -> Response:
        """v2 liveness: 200 with an empty body (503 once the inference worker died)."""
        return Response(status_code=503 if state.dead() else 200)

    @app.get("/v2/health/ready", tags=["v2"], responses=openapi.PROBE)
    async def v2_ready() -> Response:
        """v2 readiness: 200 when ready, else 503 (empty bodies)."""
        return Response(status_code=200 if state.ready and not state.dead() else 503)

    def check_version(version: str) -> None:
        if version != config.model_version:
            raise ApiError(404, f"unknown version {version!r} of {config.model_name!r}; "
                                f"this server serves version {config.model_version!r}")

    @app.get("/v2/models/{name}", tags=["v2"], responses=openapi.ERRORS)
    async def v2_model(name: str) -> Response:
        """v2 model metadata: inputs and outputs with datatypes and shapes (-1 = variable)."""
        check_name(name)
        return json_response(orjson.dumps(state.v2_metadata()))

    @app.get("/v2/models/{name}/versions/{version}", tags=["v2"], responses=openapi.ERRORS)
    async def v2_model_version(name: str, version: str) -> Response:
        """v2 model metadata of one version."""
        check_name(name)
        check_version(version)
        return json_response(orjson.dumps(state.v2_metadata()))

    @app.get("/v2/models/{name}/ready", tags=["v2"], responses=openapi.PROBE)
    async def v2_model_ready(name: str) -> Response:
        """v2 model readiness."""
        check_name(name)
        return Response(status_code=200 if state.ready else 503)

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["v2"],
             responses=openapi.PROBE)
    async def v2_model_version_ready(name: str, version: str) -> Response:
        """v2 readiness of one model version."""
        check_name(name)
        check_version(version)
        return Response(status_code=200 if state.ready else 503)

    version = config.model_version
    every_output = v2.V2Request([], None, None, frozenset(), False)
    state.encoders.append(lambda tree: v2.encode_response(tree, every_output, "", "", ""))
    state.encoders.append(lambda tree: v2.encode_response(
        tree, v2.V2Request([], None, None, frozenset(), True), "", "", ""))

    async def infer(request: Request, name: str) -> Response:
        check_name(name)
        state.require_ready()
        info = _info(request)
        batcher = state.batcher
        batcher.arriving()
        try:
            deadline = state.deadline(info.start, request.headers.get("x-request-timeout"))
            raw = await read_body(request, config.max_body_bytes)
            body, blobs = v2.split_body(raw, request.headers.get(v2.HEADER))
            parsed = v2.parse_request(body, blobs, state.sig)
            _check_outputs(parsed, state)
            _note_inputs(info, parsed.arrays, state.sig, config.log_payloads)
            request_id = str(parsed.request_id if parsed.request_id is not None
                             else info.request_id)

            def encode(tree: Any) -> tuple[bytes, int | None]:
                return v2.encode_response(tree, parsed, name, version, request_id)

            work = state.enqueue(parsed.arrays, deadline, encode, disconnect_probe(request),
                                 announced=True)
        except BaseException:
            batcher.withdraw()
            raise
        info.rows = work.rows
        content, header = await state.wait(work)
        headers = {"X-Batched-With": str(work.batched_with)}
        if header is None:
            return Response(content, media_type=JSON, headers=headers)
        headers["Inference-Header-Content-Length"] = str(header)
        return Response(content, media_type=v2.BINARY_TYPE, headers=headers)

    @direct(app, "/v2/models/{name}/infer", tags=["v2"], responses=openapi.ERRORS,
            openapi_extra=openapi.V2_INFER)
    async def v2_infer(request: Request, name: str) -> Response:
        """v2 inference: ``{"inputs": [{"name", "shape", "datatype", "data"}]}``, or with
        Triton's binary tensor data extension (``Inference-Header-Content-Length``)."""
        return await infer(request, name)

    @direct(app, "/v2/models/{name}/versions/{version}/infer", tags=["v2"],
            responses=openapi.ERRORS, openapi_extra=openapi.V2_INFER)
    async def v2_infer_version(request: Request, name: str, version: str) -> Response:
        """v2 inference on one model version (this server serves one)."""
        check_version(version)
        return await infer(request, name)

    fast[("POST", f"/v2/models/{config.model_name}/infer")] = \
        FastHandler(v2_infer, {"name": config.model_name})


def _check_outputs(parsed: v2.V2Request, state: ServingState) -> None:
    """Refuse (422) requested outputs the model does not have, before any compute."""
    if parsed.wanted is None or not state.outputs:
        return
    known = [o["name"] for o in state.outputs]
    unknown = [n for n in parsed.wanted if n not in known]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; the model has {known}")
