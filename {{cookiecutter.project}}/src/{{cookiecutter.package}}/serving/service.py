"""The HTTP API: ``create_app(settings)`` builds it, ``run(settings)`` serves it with uvicorn.

Endpoints: ``/health`` (liveness), ``/ready`` (model loaded and self-checked), ``/predict``
(one record or a batch), ``/model`` (metadata), ``/metrics`` (Prometheus) and, only when
``MODEL_ADMIN_TOKEN`` is set, the course's ``/train`` and ``/logs`` behind a bearer token.

Training runs on a worker thread, scikit-learn's import included, so the event loop keeps
answering while it goes on; the registry's file lock allows one training run at a time across
every worker process, and each worker follows the registry (``ModelState.follow_registry``), so
all of them serve the model that was trained last, whichever worker (or CLI) trained it.

Speed: the model scores a row in microseconds, so the request path is what costs. ``/predict``
is a plain ASGI endpoint that the app dispatches to before FastAPI's middleware and router
(whose per-request machinery costs several times the model). It validates the raw body in one
pass with pydantic-core's JSON parser, against request models generated from ``data.SCHEMA``,
and runs on the event loop without a thread hop; requests that arrive together are predicted
and logged together (``predict_endpoint``). The same models (``api_types``) document it in the
OpenAPI schema.
"""

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import re
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, logs, scoring
from ..config import Settings
from ..registry import Registry, RegistryBusyError
from .api_types import (
    ErrorResponse,
    Health,
    LogFile,
    ModelInfo,
    PredictResponse,
    Readiness,
    TrainRequest,
    TrainResponse,
    documented_errors,
    predict_body_types,
)
from .metrics import Metrics
from .model_state import ModelState
from .predict_endpoint import PredictEndpoint, too_large_message
from .responses import (
    JSON_WHITESPACE,
    error_items,
    error_response,
    error_summary,
    json_response,
)

logger = logging.getLogger(__name__)

# A client's request id is echoed only when it is a plain token: it ends up in logs.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Metrics label values come from this set, so clients cannot grow the number of series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# How long uvicorn's supervisor waits for a worker's answer before it kills it (see run).
WORKER_HEALTHCHECK_SECONDS = 60
TITLE = {{ cookiecutter.project_name | tojson }} + " API"
DESCRIPTION = {{ cookiecutter.description | tojson }}  # noqa: E501 - the project's description


def request_id_of(request: Request) -> str | None:
    """The id ``ServiceMiddleware`` gave the request."""
    return request.scope.get("request_id")


def server_error(scope) -> Response:
    """The answer to a bug, on any path: a 500 with the request id and nothing of the error.

    Reached by a bug, never by user input (that is refused with a 4xx); the exception is
    logged with its traceback by the server after this response.
    """
    logger.error("internal error in %s %s (request %s)", scope.get("method"), scope.get("path"),
                 scope.get("request_id"))
    return error_response(500, "internal server error; the request id is in the logs",
                          scope.get("request_id"))


class RequestIds:
    """Fresh request ids: 32 hex digits, a random prefix of the app's own and a counter.

    Unique across workers and restarts like a ``uuid4``, without its system call and object
    per request.
    """

    def __init__(self):
        self.prefix = os.urandom(10).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        """The next id."""
        return f"{self.prefix}{next(self.counter):012x}"


class ServiceMiddleware:
    """Request id, request metrics and the declared body size of every HTTP request.

    The app's outermost layer, built once: it sends ``/predict`` straight to its endpoint
    (which adds the id to its answer and enforces the size limit itself), everything else to
    FastAPI with ``receive`` and ``send`` wrapped for the same. Plain ASGI rather than
    ``BaseHTTPMiddleware``: no task group per request, so it adds microseconds, not a hop
    through anyio. A body whose Content-Length is over the limit is refused before it is
    read; one sent in chunks is refused as soon as it grows past it. A bug that escapes the
    endpoint is answered here, by ``server_error``, like one in a FastAPI route.
    """

    def __init__(self, app, predict: PredictEndpoint, *, metrics: Metrics, max_body_bytes: int):
        self.app = app
        self.predict = predict
        self.observe = metrics.requests.observe  # looked up once: it runs on every request
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large_message(max_body_bytes)
        self.ids = RequestIds()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        request_id = None
        declared = 0
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                request_id = text if REQUEST_ID.match(text) else None
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        scope["request_id"] = request_id = request_id or self.ids.next()
        status = 500
        try:
            if declared > self.max_body_bytes:
                status = 413
                refusal = error_response(413, self.too_large, request_id,
                                         headers={"connection": "close"})
                await _with_id(refusal, request_id)(scope, receive, send)
            elif scope["path"] == PredictEndpoint.path:
                try:
                    status = await self.predict(scope, receive, send)
                except Exception:
                    await _with_id(server_error(scope), request_id)(scope, receive, send)
                    raise
            else:
                header = (b"x-request-id", request_id.encode("latin-1"))
                received = 0

                async def limited_receive():
                    nonlocal received
                    message = await receive()
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        # An HTTPException passes through FastAPI's body parsing to its 413.
                        raise StarletteHTTPException(413, self.too_large)
                    return message

                async def send_with_id(message):
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message["headers"] = [*message.get("headers", ()), header]
                    await send(message)

                await self.app(scope, limited_receive, send_with_id)
        finally:
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            self.observe(endpoint, method, status, time.perf_counter() - started)


def _with_id(response: Response, request_id: str) -> Response:
    """``response`` with the request's id among its headers."""
    response.raw_headers.append((b"x-request-id", request_id.encode("latin-1")))
    return response


class ServiceApp(FastAPI):
    """The FastAPI app behind its one ``ServiceMiddleware`` (which serves ``/predict``).

    ``run`` gives uvicorn the middleware itself (``front``), one coroutine frame fewer on
    every request and on every resumption of a request waiting for its batch; calling the app
    (a test client, another server) goes through the same middleware.
    """

    front: ServiceMiddleware  # create_app sets it: around FastAPI's own __call__

    async def __call__(self, scope, receive, send):
        """Every request and the lifespan go through the middleware first."""
        await self.front(scope, receive, send)

    async def fastapi(self, scope, receive, send):
        """FastAPI's own handling: its middleware stack and router."""
        await super().__call__(scope, receive, send)


# ----------------------------------------------------------------------------- the app

def create_app(settings: Settings) -> ServiceApp:
    """Build the HTTP API for ``settings``; the model loads when the app starts."""
    metrics = Metrics()
    state = ModelState(settings, metrics)
    body_types = predict_body_types(settings.max_batch_rows)
    body_type = body_types.documented
    writer = logs.LogWriter()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(_remove_abandoned, settings)
        await run_in_threadpool(state.load)
        following = asyncio.create_task(state.follow_registry())
        yield
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        # uvicorn has answered (or given up on) every request by now: what they queued for
        # the predict log is written before the process ends.
        await run_in_threadpool(writer.close)

    app = ServiceApp(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.model = state
    app.state.metrics = metrics
    app.state.log_writer = writer
    _install_error_handlers(app)
    predict = PredictEndpoint(state, body_types, writer, settings.max_body_bytes)
    app.front = ServiceMiddleware(app.fastapi, predict, metrics=metrics,
                                  max_body_bytes=settings.max_body_bytes)

    # Served by PredictEndpoint; this unregistered twin only documents it.
    # The body's type is built at run time from the schema, which mypy cannot follow; the
    # twin is never called, so it has no body to return from.
    def predict_contract(  # type: ignore[empty-body]
            payload: body_type,  # type: ignore[valid-type]
    ) -> PredictResponse:
        """Predict one record or a batch ``{"records": [...]}`` (at most MODEL_MAX_BATCH_ROWS).

        Every predicted row is written to the predict log with the request id.
        """

    documented = [APIRoute("/predict", predict_contract, methods=["POST"], summary="Predict",
                           operation_id="predict",
                           response_model=PredictResponse,
                           responses=documented_errors(413, 422, 503))]

    @app.get("/health", response_model=Health, summary="Liveness")
    async def health() -> Response:
        """Always 200 while the process serves requests."""
        return json_response({"status": "ok"})

    @app.get("/ready", response_model=Readiness, summary="Readiness",
             responses={503: {"model": Readiness, "description": "Not ready."}})
    async def ready() -> Response:
        """200 when a model is loaded and self-checked and the predict log can be written.

        Else 503 with the reason: a prediction is given only once it is logged.
        """
        if state.loaded is None:
            await run_in_threadpool(state.load)  # a model trained since startup counts
        if state.loaded is None:
            return json_response({"ready": False, "model_version": None,
                                  "reason": state.problem}, 503)
        if state.log_problem is not None:
            await run_in_threadpool(state.check_log)
            if state.log_problem is not None:
                return json_response({"ready": False, "model_version": state.loaded.version,
                                      "reason": state.log_problem}, 503)
        return json_response({"ready": True, "model_version": state.loaded.version,
                              "reason": None})

    @app.get("/model", response_model=ModelInfo, summary="Model metadata",
             responses=documented_errors(503))
    async def model_info() -> Response:
        """The served version, its note, training time, metrics and data fingerprint."""
        loaded = state.require()
        return json_response(_model_info(loaded))

    @app.get("/metrics", summary="Prometheus metrics",
             response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "Metrics in the Prometheus text format."}})
    async def prometheus_metrics() -> Response:
        """Request counts and latency by endpoint and status, predictions by class."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.admin_token is not None:
        documented.append(_add_admin_routes(app, settings, state))
    _document(app, documented)
    return app


def _remove_abandoned(settings: Settings) -> None:
    """Remove what a killed training run left in the registry (a read-only one is left as is)."""
    try:
        removed = Registry(settings.registry_dir).remove_abandoned()
    except OSError as error:
        logger.info("left the registry's temporary folders as they are: %s", error)
        return
    for folder in removed:
        logger.warning("removed %s, left by a training run that did not finish", folder)


def _model_info(loaded: scoring.LoadedModel) -> dict:
    metadata = loaded.metadata
    metrics = metadata.get("metrics", {})
    return {
        "name": loaded.name,
        "model_version": loaded.version,
        "note": metadata.get("note"),
        "trained_at": metadata.get("trained_at"),
        "metrics": {key: metrics[key] for key in ("selected_model", "test", "baseline_test")
                    if key in metrics},
        "data": metadata.get("data", {}),
    }


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        items = error_items(error)
        return error_response(422, error_summary(items), request_id_of(request), items)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_response(error.status_code, str(error.detail), request_id_of(request),
                              headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> Response:
        return server_error(request.scope)


def _add_admin_routes(app: FastAPI, settings: Settings, state: ModelState) -> APIRoute:
    """The course's train and logs endpoints, behind ``Authorization: Bearer <token>``.

    Returns the route that documents ``POST /train`` (served by a twin that reads the body
    only after the token is checked).
    """
    bearer = HTTPBearer(auto_error=False, description="MODEL_ADMIN_TOKEN")
    assert settings.admin_token is not None  # create_app adds these routes only with one
    expected = settings.admin_token.get_secret_value().encode("utf-8")
    # The documented body: null means none. Any: mypy cannot type a union passed as a value
    # (PEP 747's TypeForm), and its choice of TypeAdapter's overload for one varies with its
    # cache; the adapter's own annotation says what it returns.
    train_body: Any = TrainRequest | None
    train_options: TypeAdapter[TrainRequest | None] = TypeAdapter(train_body)

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        # compare_digest: the time taken does not reveal how much of the token matched.
        given = credentials.credentials.encode("utf-8") if credentials else b""
        if not credentials or not hmac.compare_digest(given, expected):
            raise HTTPException(401, "a valid 'Authorization: Bearer <token>' header is "
                                     "required", headers={"WWW-Authenticate": "Bearer"})

    admin = [Depends(require_admin)]

    # Never called (a documentation twin, as predict_contract): no body to return from.
    def train(options: TrainRequest | None = None) -> TrainResponse:  # type: ignore[empty-body]
        """Train the configured version; test mode trains a throw-away test model.

        A production run replaces the served model once it is stored and self-checked, in
        every worker. One training run at a time: another one meanwhile gets a 409.
        """

    documented = APIRoute(
        "/train", train, methods=["POST"], summary="Train", dependencies=admin,
        response_model=TrainResponse,
        responses={**documented_errors(401, 413, 422),
                   409: {"model": ErrorResponse,
                         "description": "A training run is going on."},
                   503: {"model": ErrorResponse,
                         "description": "The model was stored, but the train log cannot "
                                        "be written."}})

    @app.post("/train", include_in_schema=False)
    async def train_endpoint(request: Request) -> Response:
        # The token is checked before the body is read: FastAPI reads a declared body before
        # it runs any dependency, so the body is read and validated here instead.
        require_admin(await bearer(request))
        body = await request.body()
        try:
            given = train_options.validate_json(body) if body.strip(JSON_WHITESPACE) else None
        except ValidationError as error:
            items = error_items(error)
            return error_response(422, error_summary(items), request_id_of(request), items)
        options = given or TrainRequest()
        try:
            result = await run_in_threadpool(_train_and_serve, settings, state,
                                             options.test_mode)
        except RegistryBusyError as error:
            raise HTTPException(409, str(error)) from None
        except logs.LogWriteError as error:
            logger.error("the train log %s cannot be written: %s", error.filename, error)
            raise HTTPException(503, "the model was stored, but the train log cannot be "
                                     f"written ({error.strerror})") from None
        return json_response({
            "name": result.name, "model_version": result.version,
            "test_mode": options.test_mode, "trained_at": result.metadata.get("trained_at"),
            "metrics": {key: result.metrics[key] for key in ("selected_model", "test")},
        })

    @app.get("/logs", response_model=list[LogFile], summary="List logs", dependencies=admin,
             responses=documented_errors(401))
    async def list_logs() -> Response:
        """The log files that ``GET /logs/{name}`` serves: regular files, never links."""
        found = await run_in_threadpool(logs.served_log_files, settings.log_dir)
        return json_response([{"name": name, "bytes": size} for name, size in found])

    @app.get("/logs/{name}", summary="Download a log", dependencies=admin,
             response_class=FileResponse, responses={
                 **documented_errors(401, 404),
                 200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                       "description": "The log file: one JSON object per line."}})
    async def get_log(name: str) -> Response:
        """One log file by name, e.g. ``predict-2026-01.jsonl``; nothing outside the logs."""
        opened = await run_in_threadpool(logs.open_served_log, settings.log_dir, name)
        if opened is None:
            raise HTTPException(404, f"no log named {name!r}; GET /logs lists them")
        fd, size = opened
        # The bytes up to the size at opening: whole lines, as every append is one write.
        return StreamingResponse(
            _read_chunks(fd, size), media_type="application/x-ndjson",
            headers={"content-length": str(size),
                     "content-disposition": f'attachment; filename="{name}"'})

    return documented


def _train_and_serve(settings: Settings, state: ModelState, test_mode: bool):
    """Train under the registry's lock and serve the result (runs on a worker thread)."""
    with Registry(settings.registry_dir).training_lock():
        from .. import training  # scikit-learn: imported here, off the event loop, when needed

        result = training.train(settings, test_mode=test_mode)
        if not test_mode:
            state.load()
    return result


def _read_chunks(fd: int, size: int, chunk: int = 1 << 16):
    """The first ``size`` bytes of an open file, in chunks; closes it (Starlette iterates a
    plain generator on a worker thread)."""
    try:
        while size > 0:
            data = os.read(fd, min(chunk, size))
            if not data:
                break
            size -= len(data)
            yield data
    finally:
        os.close(fd)


def _document(app: FastAPI, twins: list[APIRoute]) -> None:
    """Generate the OpenAPI schema from the app's routes and the twins of undocumented ones.

    A twin takes the place of the served route of its path and method, or comes first.
    """

    def openapi() -> dict:
        if app.openapi_schema is None:
            by_key = {(twin.path, frozenset(twin.methods or ())): twin for twin in twins}
            routes = [by_key.pop((route.path, frozenset(route.methods or ())), route)
                      if isinstance(route, APIRoute) else route for route in app.routes]
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=[*by_key.values(), *routes],
            )
        return app.openapi_schema

    # FastAPI's documented way to replace the schema (mypy flags any method assignment):
    # https://fastapi.tiangolo.com/how-to/extending-openapi/
    app.openapi = openapi  # type: ignore[method-assign]


def run(settings: Settings) -> int:
    """Serve the app with uvicorn: production settings, no reload, no per-request log."""
    import uvicorn  # imported here: the CLI's other commands do not need it

    # The package's own messages (which model is served, load failures) at INFO, next to
    # uvicorn's; the command line sets the root logger to warnings only.
    logging.getLogger(__package__.partition(".")[0]).setLevel(logging.INFO)
    config: dict[str, Any] = dict(
        host=settings.host, port=settings.port, workers=settings.workers, access_log=False,
        log_level="info", proxy_headers=False, timeout_graceful_shutdown=10)
    if settings.workers > 1:
        # uvicorn's supervisor pings each worker and kills one that does not answer in time
        # ("Child process [...] died"); its default of 5 s is shorter than a worker's start-up
        # (a spawned interpreter importing the app) on a busy machine, which then kills and
        # restarts workers in a loop. uvicorn >= 0.37 makes the timeout a setting.
        config["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    if settings.workers > 1:
        # Workers are separate processes: each builds its app from the same settings.
        uvicorn.run(f"{__package__}.service:app_from_environment", factory=True, **config)
    else:
        uvicorn.run(create_app(settings).front, **config)
    return 0


def app_from_environment() -> ServiceMiddleware:
    """What each worker process serves: the front of the app for settings read from the
    environment."""
    return create_app(Settings()).front
