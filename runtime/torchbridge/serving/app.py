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
from torchbridge.core.subject import InputSpec
from torchbridge.serving import openapi
from torchbridge.serving.config import ServerConfig
from torchbridge.serving.errors import ApiError, error_body, error_response
from torchbridge.serving.generate import GenerateRequest, Generation, vocab_size
from torchbridge.serving.metrics import CONTENT_TYPE
from torchbridge.serving.middleware import FastHandler, RequestInfo, ServingMiddleware
from torchbridge.serving.padding import declared_padding
from torchbridge.serving.runner import leaves
from torchbridge.serving.schemas import (
    V2_DATATYPES,
    InvalidInput,
    Signature,
    describe,
    parse_predict,
    parse_v2,
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


def json_response(content: bytes, status: int = 200) -> Response:
    return Response(content, status_code=status, media_type=JSON)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 413 past ``limit`` bytes (also for chunked bodies), 400 if invalid."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None


def disconnect_probe(request: Request) -> Callable[[], bool] | None:
    """A cheap 'has the client gone?' for the worker thread, where the server offers one.

    uvicorn's request cycle keeps a ``disconnected`` flag; reading it needs no task per
    request. Elsewhere the worker cannot tell and the request runs to its deadline.
    """
    cycle = getattr(request.receive, "__self__", None)
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
        """Liveness: the process serves HTTP (it may still be warming up)."""
        return json_response(orjson.dumps({"status": "alive"}))

    @app.get("/ready", tags=["probes"], responses=openapi.PROBE)
    async def ready() -> Response:
        """Readiness: 200 once the model is loaded and warmed up, else 503."""
        if state.ready:
            return json_response(orjson.dumps({"status": "ready"}))
        return Response(error_body(f"not ready: {state.not_ready_reason}"), status_code=503,
                        media_type=JSON, headers={"Retry-After": "1"})

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
        return json_response(await state.wait(work))

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
        job = Generation(state, body, deadline)
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
                                           "extensions": []}))

    @app.get("/v2/health/live", tags=["v2"], responses=openapi.PROBE)
    async def v2_live() -> Response:
        """v2 liveness: 200 with an empty body."""
        return Response(status_code=200)

    @app.get("/v2/health/ready", tags=["v2"], responses=openapi.PROBE)
    async def v2_ready() -> Response:
        """v2 readiness: 200 when ready, else 503 (empty bodies)."""
        return Response(status_code=200 if state.ready else 503)

    @app.get("/v2/models/{name}", tags=["v2"], responses=openapi.ERRORS)
    async def v2_model(name: str) -> Response:
        """v2 model metadata: inputs and outputs with datatypes and shapes (-1 = variable)."""
        check_name(name)
        return json_response(orjson.dumps(state.v2_metadata()))

    @app.get("/v2/models/{name}/ready", tags=["v2"], responses=openapi.PROBE)
    async def v2_model_ready(name: str) -> Response:
        """v2 model readiness."""
        check_name(name)
        return Response(status_code=200 if state.ready else 503)

    version = config.model_version

    @direct(app, "/v2/models/{name}/infer", tags=["v2"], responses=openapi.ERRORS,
            openapi_extra=openapi.V2_INFER)
    async def v2_infer(request: Request, name: str) -> Response:
        """v2 inference: ``{"inputs": [{"name", "shape", "datatype", "data"}]}``."""
        check_name(name)
        state.require_ready()
        info = _info(request)
        batcher = state.batcher
        batcher.arriving()
        try:
            deadline = state.deadline(info.start, request.headers.get("x-request-timeout"))
            body = await read_json(request, config.max_body_bytes)
            arrays = parse_v2(body, state.sig)
            _note_inputs(info, arrays, state.sig, config.log_payloads)
            request_id = body.get("id", info.request_id)

            def encode(tree: Any) -> bytes:
                outputs = [{"name": n, "datatype": _v2_type(a), "shape": list(a.shape),
                            "data": a.ravel()} for n, a in leaves(tree)]
                return orjson.dumps({"model_name": name, "model_version": version,
                                     "id": str(request_id), "outputs": outputs},
                                    option=_NUMPY)

            work = state.enqueue(arrays, deadline, encode, disconnect_probe(request),
                                 announced=True)
        except BaseException:
            batcher.withdraw()
            raise
        info.rows = work.rows
        return json_response(await state.wait(work))

    fast[("POST", f"/v2/models/{config.model_name}/infer")] = \
        FastHandler(v2_infer, {"name": config.model_name})


def _v2_type(array: Any) -> str:
    dtype = torch.from_numpy(array[:0].copy()).dtype if array.ndim else \
        torch.as_tensor(array).dtype
    return V2_DATATYPES.get(dtype, "BYTES")
