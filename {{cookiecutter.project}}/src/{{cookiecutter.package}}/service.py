"""The HTTP API: ``create_app(settings)`` builds it, ``run(settings)`` serves it with uvicorn.

Endpoints: ``/health`` (liveness), ``/ready`` (model loaded and self-checked), ``/predict``
(one record or a batch), ``/model`` (metadata), ``/metrics`` (Prometheus) and, only when
``MODEL_ADMIN_TOKEN`` is set, the course's ``/train`` and ``/logs`` behind a bearer token.

Speed: the model scores a row in microseconds, so the request path is what costs. ``/predict``
is a plain ASGI endpoint that the app dispatches to before FastAPI's middleware and router
(whose per-request machinery costs several times the model). It validates the raw body in one
pass with pydantic-core's JSON parser, against request models generated from ``data.SCHEMA``,
and runs on the event loop without a thread hop; requests that arrive together are predicted
and logged together. The same models document it in the OpenAPI schema.
"""

import asyncio
import collections
import hmac
import itertools
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Literal, Union

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    TypeAdapter,
    ValidationError,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from typing_extensions import TypedDict  # pydantic's TypedDict support needs it on Python < 3.12

from . import __version__, data, logs, model
from .config import Settings
from .registry import RegistryError

logger = logging.getLogger(__name__)

# A client's request id is echoed only when it is a plain token: it ends up in logs.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The only names GET /logs/{name} serves: monthly log files, never a path.
LOG_FILE_NAME = re.compile(r"^(train|predict)(-test)?-\d{4}-\d{2}\.jsonl$")
JSON = "application/json"
# Metrics label values come from this set, so clients cannot grow the number of series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TITLE = {{ cookiecutter.project_name | tojson }} + " API"
DESCRIPTION = {{ cookiecutter.description | tojson }}  # noqa: E501 - the project's description


# ----------------------------------------------------------------------------- request models

def _integral_float_to_int(value):
    # JSON Schema's "integer" includes 34.0 (the same number as 34); the API documents
    # "integer", so it takes it. Booleans, strings and 34.5 still fail the strict check.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def record_model(*, whole_floats: bool = True) -> type:
    """The request type of one record, generated from ``data.SCHEMA``.

    Strict like ``data.validate_rows``: exact fields, booleans and numeric strings are not
    numbers, 12.5 is not an integer, categories are a closed set and numbers have a range.
    One difference: 12.0 counts as the integer 12, as JSON Schema (the documented contract)
    defines it; the row passed on holds the int. ``whole_floats=False`` leaves that out: no
    Python callback per value, so validation runs in pydantic-core alone, twice as fast.
    A TypedDict rather than a model: validation yields the plain dicts prediction takes.
    """
    fields = {}
    for feature in data.SCHEMA.features:
        if isinstance(feature, data.CategoricalFeature):
            kind = Literal[feature.categories]  # type: ignore[valid-type]
            fields[feature.name] = Annotated[kind, Field(description=feature.description)]
        else:
            limits = Field(ge=feature.minimum, le=feature.maximum,
                           description=feature.description)
            if feature.integer:
                accept = [BeforeValidator(_integral_float_to_int)] if whole_floats else []
                fields[feature.name] = Annotated[(StrictInt, limits, *accept)]
            else:  # a float feature takes whole numbers too, but never NaN or infinity
                fields[feature.name] = Annotated[float, limits, Field(allow_inf_nan=False)]
    record = TypedDict("Record", fields)
    record.__pydantic_config__ = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [data.SCHEMA.example]})
    return record


def batch_model(record: type, max_rows: int) -> type:
    """The request type of a batch: ``{"records": [record, ...]}`` of 1 to ``max_rows``."""
    batch = TypedDict("Batch", {
        "records": Annotated[list[record], Field(min_length=1, max_length=max_rows)]})
    batch.__pydantic_config__ = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{"records": [data.SCHEMA.example]}]})
    return batch


def _request_kind(payload) -> str:
    # Choosing the branch up front keeps error messages about the body the client meant.
    return "batch" if isinstance(payload, dict) and "records" in payload else "record"


def predict_request_type(record: type, batch: type):
    """The body of ``POST /predict``: one record or a batch."""
    return Annotated[
        Union[Annotated[record, Tag("record")], Annotated[batch, Tag("batch")]],
        Discriminator(_request_kind),
    ]


class PredictResponse(BaseModel):
    """Predictions of the requested rows, in request order."""

    request_id: str = Field(description="The X-Request-ID header's value, or a new id.")
    model_version: str
    predictions: list[int] = Field(description="Predicted class of each row.")
    probabilities: list[float] = Field(description="Probability of class 1 of each row.")


class ErrorItem(BaseModel):
    """One problem of a request."""

    field: str = Field(description="Where the problem is, e.g. records.3.age.")
    message: str


class ErrorResponse(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="What is wrong, in one sentence.")
    errors: list[ErrorItem] = Field(default_factory=list)
    request_id: str | None = None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether the model is loaded and its self-check passed."""

    ready: bool
    model_version: str | None = None
    reason: str | None = None


class ModelInfo(BaseModel):
    """The served model version and what is known about it."""

    name: str
    model_version: str
    note: str | None = None
    trained_at: str | None = None
    metrics: dict = Field(default_factory=dict)
    data: dict = Field(default_factory=dict)


class TrainRequest(BaseModel):
    """Options of a training run."""

    model_config = ConfigDict(extra="forbid", strict=True)

    test_mode: StrictBool = Field(
        False, description="Train a throw-away test model; the served model stays."
    )


class TrainResponse(BaseModel):
    """What a training run stored."""

    name: str
    model_version: str
    test_mode: bool
    trained_at: str | None = None
    metrics: dict = Field(default_factory=dict)


class LogFile(BaseModel):
    """A log file that ``GET /logs/{name}`` serves."""

    name: str
    bytes: int


ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorResponse, "description": "Not found."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid request; the message names the field."},
    503: {"model": ErrorResponse, "description": "No model is loaded."},
}


def _errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


# ----------------------------------------------------------------------------- helpers

def json_response(content, status_code: int = 200, headers: dict | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON,
                    headers=headers)


def _field(location) -> str:
    # Drop the union tag ("record"/"batch") the client never wrote.
    parts = [str(part) for part in location if part not in ("record", "batch", "body")]
    return ".".join(parts) or "body"


def error_items(error: ValidationError | RequestValidationError) -> list[dict]:
    """The problems of a pydantic error as ``{"field", "message"}`` items."""
    items = []
    for item in error.errors():
        message = item["msg"]
        if item["type"] == "json_invalid":
            message = f"invalid JSON: {item.get('ctx', {}).get('error', message)}"
        items.append({"field": _field(item["loc"]), "message": message})
    return items


def error_response(status_code: int, detail: str, request_id: str | None = None,
                   errors: list[dict] | None = None, headers: dict | None = None) -> Response:
    """The JSON error body of every refusal."""
    return json_response({"detail": detail, "errors": errors or [], "request_id": request_id},
                         status_code, headers)


def request_id_of(request: Request) -> str | None:
    """The id ``ServiceMiddleware`` gave the request."""
    return request.scope.get("request_id")


def _summary(items: list[dict]) -> str:
    first = items[0]
    more = f" (and {len(items) - 1} more problems)" if len(items) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency by endpoint and status.",
            ["endpoint", "method", "status"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.predictions = Counter(
            "model_predictions", "Predicted rows by class and model version.",
            ["model_version", "prediction"], registry=self.registry,
        )
        self._series: dict[tuple, tuple] = {}
        self.info = Gauge(
            "model_info", "1 for the model version being served.",
            ["model_version", "name"], registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count a request and its latency."""
        key = (endpoint, method, status)
        series = self._series.get(key)
        if series is None:  # the labelled children are looked up once per combination
            labels = (endpoint, method, str(status))
            series = self._series[key] = (self.requests.labels(*labels),
                                          self.latency.labels(*labels))
        series[0].inc()
        series[1].observe(seconds)

    def served(self, loaded: model.LoadedModel) -> None:
        """Mark ``loaded`` as the served version."""
        self.info.clear()
        self.info.labels(loaded.version, loaded.name).set(1)


class ServiceMiddleware:
    """Request id, request metrics and the declared body size of every HTTP request.

    Plain ASGI rather than ``BaseHTTPMiddleware``: no task group per request, so it adds
    microseconds, not a hop through anyio. A body whose Content-Length is over the limit is
    refused before it is read; one sent in chunks is refused as soon as it grows past it.
    """

    def __init__(self, app, *, metrics: Metrics, max_body_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.too_large = (f"the request body is larger than {max_body_bytes} bytes "
                          "(MODEL_MAX_BODY_BYTES)")

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
        scope["request_id"] = request_id = request_id or uuid.uuid4().hex
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                # An HTTPException passes through FastAPI's body parsing to the 413 handler.
                raise StarletteHTTPException(413, self.too_large)
            return message

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            if declared > self.max_body_bytes:
                refusal = error_response(413, self.too_large, request_id,
                                         headers={"connection": "close"})
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            self.metrics.observe(endpoint, method, status, time.perf_counter() - started)


class PredictionBatcher:
    """Predicts the requests that arrive together in one model call and one log append.

    A request's rows are queued and the flush is scheduled with ``call_soon``: it runs after
    the callbacks already due, which include the other requests whose bytes arrived in the
    same turn of the event loop. Under concurrency that gathers them into one batch; alone, a
    request waits one turn of the loop (microseconds). The model's per-call cost and the log's
    file operations are then paid once per batch instead of once per request.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pending: list[tuple] = []

    def submit(self, loaded: model.LoadedModel, rows: list, request_id: str) -> asyncio.Future:
        """Queue a request's validated rows; the future gets its ``model.Prediction``."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending:
            loop.call_soon(self.flush)
        self.pending.append((loaded, rows, request_id, future))
        return future

    def flush(self) -> None:
        """Predict every queued request; a failure goes to each request's future."""
        pending, self.pending = self.pending, []
        # A model swapped in by a training run mid-batch predicts only what came after it.
        for loaded, group in itertools.groupby(pending, key=lambda item: item[0]):
            group = list(group)
            try:
                predictions = model.predict_requests(
                    loaded, [(rows, request_id) for _, rows, request_id, _ in group],
                    settings=self.settings)
            except Exception as error:  # noqa: BLE001 - each request reports it
                predictions = [error] * len(group)
            for (*_, future), outcome in zip(group, predictions):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


class PredictEndpoint:
    """``POST /predict`` as a plain ASGI app: validate, predict, log, answer.

    ``ServiceApp`` sends the path here ahead of FastAPI's middleware, router and per-request
    dependency machinery, which together cost several times the model's microseconds; the
    ``ServiceMiddleware`` around it still gives the request id, the metrics and the size limit.
    Every failure is answered here: 4xx for the client's mistakes, a logged 500 for a bug.
    """

    path = "/predict"  # the metrics' endpoint label

    def __init__(self, state: "ModelState", adapters: tuple[TypeAdapter, TypeAdapter]):
        self.state = state
        self.metrics = state.metrics
        self.strict, self.documented = adapters
        self.batcher = PredictionBatcher(state.settings)

    async def __call__(self, scope, receive, send):
        scope["route"] = self
        request_id = scope["request_id"]
        if scope["method"] != "POST":
            response = error_response(405, "method not allowed: POST /predict", request_id,
                                      headers={"allow": "POST"})
        else:
            try:
                response = await self.predict(scope, receive)
            except StarletteHTTPException as error:  # the body grew past the size limit
                response = error_response(error.status_code, str(error.detail), request_id)
            except Exception:
                logger.exception("internal error in POST /predict (request %s)", request_id)
                response = error_response(
                    500, "internal server error; the request id is in the logs", request_id)
        await response(scope, receive, send)

    async def predict(self, scope, receive) -> Response:
        """The answer to one prediction request."""
        request_id = scope["request_id"]
        loaded = self.state.loaded
        if loaded is None:
            return error_response(503, f"no model is loaded: {self.state.problem}", request_id)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not body.strip():
            return error_response(
                422, 'the request body is empty: send one record or {"records": [...]}',
                request_id, [{"field": "body", "message": "empty body"}])
        try:
            payload = self.strict.validate_json(body)
        except ValidationError:
            try:
                payload = self.documented.validate_json(body)
            except ValidationError as error:
                items = error_items(error)
                return error_response(422, _summary(items), request_id, items)
        rows = payload["records"] if "records" in payload else [payload]
        # The request model enforces data.validate_rows' rules, so they are not run twice.
        prediction = await self.batcher.submit(loaded, rows, request_id)
        for label, count in collections.Counter(prediction.labels).items():
            self.metrics.predictions.labels(loaded.version, str(label)).inc(count)
        return json_response(prediction.to_dict())


class ServiceApp(FastAPI):
    """The FastAPI app, with ``/predict`` dispatched to its fast endpoint first."""

    fast_predict = None  # set by create_app: ServiceMiddleware around a PredictEndpoint

    async def __call__(self, scope, receive, send):
        """Dispatch ``/predict`` to the fast endpoint, everything else to FastAPI."""
        if scope["type"] == "http" and scope["path"] == "/predict" and self.fast_predict:
            await self.fast_predict(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


# ----------------------------------------------------------------------------- model state

class ModelState:
    """The served model: loaded at startup, reloaded after training, checked for readiness."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.loaded: model.LoadedModel | None = None
        self.problem = "not loaded yet"
        self.training = asyncio.Lock()

    def load(self) -> bool:
        """Load and self-check the configured version; keep the current one on failure."""
        try:
            loaded = model.load_model(self.settings)
        except RegistryError as error:
            if str(error) != self.problem:  # once, not at every readiness probe
                logger.warning("no model to serve: %s", error)
            self.problem = str(error)
            return False
        if not loaded.self_check():
            self.problem = "the model's self-check prediction failed"
            return False
        self.loaded, self.problem = loaded, ""
        self.metrics.served(loaded)
        logger.info("serving %s version %s from %s", loaded.name, loaded.version, loaded.path)
        return True

    def require(self) -> model.LoadedModel:
        """The loaded model, or a 503 naming why there is none."""
        if self.loaded is None:
            raise HTTPException(503, f"no model is loaded: {self.problem}")
        return self.loaded


# ----------------------------------------------------------------------------- the app

def create_app(settings: Settings) -> FastAPI:
    """Build the HTTP API for ``settings``; the model loads when the app starts."""
    metrics = Metrics()
    state = ModelState(settings, metrics)
    record = record_model()
    batch = batch_model(record, settings.max_batch_rows)
    body_type = predict_request_type(record, batch)
    # Bodies are validated by the strict twin of the documented type first; only a body it
    # refuses (perhaps for an integer written 34.0) takes the documented type's slower pass.
    strict_record = record_model(whole_floats=False)
    strict_type = predict_request_type(strict_record,
                                       batch_model(strict_record, settings.max_batch_rows))
    adapters = (TypeAdapter(strict_type), TypeAdapter(body_type))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(state.load)
        yield

    app = ServiceApp(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.model = state
    app.state.metrics = metrics
    app.add_middleware(ServiceMiddleware, metrics=metrics,
                       max_body_bytes=settings.max_body_bytes)
    _install_error_handlers(app)

    app.fast_predict = ServiceMiddleware(PredictEndpoint(state, adapters), metrics=metrics,
                                         max_body_bytes=settings.max_body_bytes)

    # Served by PredictEndpoint; this unregistered twin only documents it.
    def predict_contract(payload: body_type) -> PredictResponse:  # type: ignore[valid-type]
        """Predict one record or a batch ``{"records": [...]}`` (at most MODEL_MAX_BATCH_ROWS).

        Every predicted row is written to the predict log with the request id.
        """

    documented = [APIRoute("/predict", predict_contract, methods=["POST"], summary="Predict",
                           operation_id="predict",
                           response_model=PredictResponse, responses=_errors(413, 422, 503))]

    @app.get("/health", response_model=Health, summary="Liveness")
    async def health() -> Response:
        """Always 200 while the process serves requests."""
        return json_response({"status": "ok"})

    @app.get("/ready", response_model=Readiness, summary="Readiness",
             responses={503: {"model": Readiness, "description": "Not ready."}})
    async def ready() -> Response:
        """200 when a model is loaded and its self-check passed, else 503 with the reason."""
        if state.loaded is None:
            await run_in_threadpool(state.load)  # a model trained since startup counts
        if state.loaded is None:
            return json_response({"ready": False, "model_version": None,
                                  "reason": state.problem}, 503)
        return json_response({"ready": True, "model_version": state.loaded.version,
                              "reason": None})

    @app.get("/model", response_model=ModelInfo, summary="Model metadata",
             responses=_errors(503))
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
        _add_admin_routes(app, settings, state)
    _document(app, documented)
    return app


def _model_info(loaded: model.LoadedModel) -> dict:
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
        return error_response(422, _summary(items), request_id_of(request), items)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_response(error.status_code, str(error.detail), request_id_of(request),
                              headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> Response:
        # Reached by a bug, never by user input (that is refused with a 4xx above); the
        # exception is logged with its traceback by the server after this response.
        logger.error("internal error in %s %s (request %s)", request.method, request.url.path,
                     request.scope.get("request_id"))
        return error_response(500, "internal server error; the request id is in the logs",
                              request_id_of(request))


def _add_admin_routes(app: FastAPI, settings: Settings, state: ModelState) -> None:
    """The course's train and logs endpoints, behind ``Authorization: Bearer <token>``."""
    bearer = HTTPBearer(auto_error=False, description="MODEL_ADMIN_TOKEN")
    expected = settings.admin_token.get_secret_value().encode("utf-8")

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        # compare_digest: the time taken does not reveal how much of the token matched.
        given = credentials.credentials.encode("utf-8") if credentials else b""
        if not credentials or not hmac.compare_digest(given, expected):
            raise HTTPException(401, "a valid 'Authorization: Bearer <token>' header is "
                                     "required", headers={"WWW-Authenticate": "Bearer"})

    admin = [Depends(require_admin)]

    @app.post("/train", response_model=TrainResponse, summary="Train", dependencies=admin,
              responses={**_errors(401), 409: {"model": ErrorResponse,
                                               "description": "A training run is going on."}})
    async def train(options: TrainRequest | None = None) -> Response:
        """Train the configured version; test mode trains a throw-away test model.

        A production run replaces the served model once it is stored and self-checked.
        """
        options = options or TrainRequest()
        if state.training.locked():
            raise HTTPException(409, "a training run is already going on")
        async with state.training:
            result = await run_in_threadpool(model.train, settings,
                                             test_mode=options.test_mode)
            if not options.test_mode:
                await run_in_threadpool(state.load)
        return json_response({
            "name": result.name, "model_version": result.version,
            "test_mode": options.test_mode, "trained_at": result.metadata.get("trained_at"),
            "metrics": {key: result.metrics[key] for key in ("selected_model", "test")},
        })

    @app.get("/logs", response_model=list[LogFile], summary="List logs", dependencies=admin,
             responses=_errors(401))
    async def list_logs() -> Response:
        """The log files that ``GET /logs/{name}`` serves."""
        found = []
        for kind in logs.KINDS:
            for test_mode in (False, True):
                found += logs.log_files(settings.log_dir, kind, test_mode=test_mode)
        return json_response([{"name": path.name, "bytes": path.stat().st_size}
                              for path in sorted(found)])

    @app.get("/logs/{name}", summary="Download a log", dependencies=admin,
             response_class=FileResponse, responses={
                 **_errors(401, 404),
                 200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                       "description": "The log file: one JSON object per line."}})
    async def get_log(name: str) -> Response:
        """One log file by name, e.g. ``predict-2026-01.jsonl``; nothing outside the logs."""
        path = settings.log_dir / name
        if not LOG_FILE_NAME.match(name) or not path.is_file():
            raise HTTPException(404, f"no log named {name!r}; GET /logs lists them")
        return FileResponse(path, media_type="application/x-ndjson", filename=name)


def _document(app: FastAPI, extra_routes: list[APIRoute]) -> None:
    """Generate the OpenAPI schema from the app's routes plus the fast routes' twins."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=[*extra_routes, *app.routes],
            )
        return app.openapi_schema

    app.openapi = openapi


def run(settings: Settings) -> int:
    """Serve the app with uvicorn: production settings, no reload, no per-request log."""
    import uvicorn  # imported here: the CLI's other commands do not need it

    # The package's own messages (which model is served, load failures) at INFO, next to
    # uvicorn's; the command line sets the root logger to warnings only.
    logging.getLogger(__package__).setLevel(logging.INFO)
    config = dict(host=settings.host, port=settings.port, workers=settings.workers,
                  access_log=False, log_level="info", proxy_headers=False,
                  timeout_graceful_shutdown=10)
    if settings.workers > 1:
        # Workers are separate processes: each builds its app from the same settings.
        uvicorn.run(f"{__package__}.service:app_from_environment", factory=True, **config)
    else:
        uvicorn.run(create_app(settings), **config)
    return 0


def app_from_environment() -> FastAPI:
    """The app for settings read from the environment (what each worker process runs)."""
    return create_app(Settings())
