"""``POST /predict`` as a plain ASGI endpoint, and the batching of concurrent predictions.

The model scores a row in microseconds, so the request path is what costs: the app hands
``/predict`` to this endpoint ahead of FastAPI's middleware and router. It validates the raw
body in one pass with pydantic-core's JSON parser and runs on the event loop without a thread
hop; requests that arrive together are predicted and logged together.

A prediction is given only once it is logged: when the predict log cannot be written, the
requests are refused with 503 (and ``/ready`` says not ready) rather than answered unlogged.

Event-loop time: a batch's rows are counted before any is validated, so a body of many tiny
rows is refused in the time it takes to parse it, and the largest accepted request costs what
``MODEL_MAX_BATCH_ROWS`` valid rows cost to validate, predict and log.
"""

import asyncio
import collections
import itertools
import logging
from collections.abc import Sequence

import orjson

from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import logs, scoring
from .model_state import ModelState
from .responses import error_items, error_response, error_summary, json_response

logger = logging.getLogger(__name__)


class PredictionBatcher:
    """Predicts the requests that arrive together in one model call and one log append.

    A request's rows are queued and the flush is scheduled with ``call_soon``: it runs after
    the callbacks already due, which include the other requests whose bytes arrived in the
    same turn of the event loop. Under concurrency that gathers them into one batch; alone, a
    request waits one turn of the loop (microseconds). The model's per-call cost and the log's
    file operations are then paid once per batch instead of once per request.
    """

    def __init__(self, state: ModelState):
        self.state = state
        self.settings = state.settings
        self.pending: list[tuple] = []

    def submit(self, loaded: scoring.LoadedModel, rows: list, request_id: str) -> asyncio.Future:
        """Queue a request's validated rows; the future gets its ``scoring.Prediction``."""
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
        for loaded, same_model in itertools.groupby(pending, key=lambda item: item[0]):
            group = list(same_model)
            predictions: Sequence[scoring.Prediction | Exception]
            try:
                predictions = scoring.predict_requests(
                    loaded, [(rows, request_id) for _, rows, request_id, _ in group],
                    settings=self.settings)
            except logs.LogWriteError as error:
                self.state.log_failed(error)
                predictions = [error] * len(group)
            except Exception as error:  # noqa: BLE001 - each request reports it
                predictions = [error] * len(group)
            else:
                if self.state.log_problem is not None:
                    self.state.log_recovered()
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

    def __init__(self, state: ModelState, adapters: tuple[TypeAdapter, TypeAdapter]):
        self.state = state
        self.metrics = state.metrics
        self.strict, self.documented = adapters
        self.batcher = PredictionBatcher(state)
        self.max_rows = state.settings.max_batch_rows

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
            except logs.LogWriteError:  # counted and reported by the batcher
                response = error_response(
                    503, f"the prediction was not given: {self.state.log_problem}", request_id)
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
        # An array of n elements holds n - 1 commas: a body with fewer commas than the limit
        # (counting them costs microseconds) cannot hold too many rows. Only larger bodies are
        # parsed once to count their rows before any is validated.
        if body.count(b",") >= self.max_rows:
            too_many = self.too_many_rows(body, request_id)
            if too_many is not None:
                return too_many
        try:
            payload = self.strict.validate_json(body)
        except ValidationError:
            try:
                payload = self.documented.validate_json(body)
            except ValidationError as error:
                items = error_items(error)
                return error_response(422, error_summary(items), request_id, items)
        rows = payload["records"] if "records" in payload else [payload]
        # The request model enforces data.validate_rows' rules, so they are not run twice.
        prediction = await self.batcher.submit(loaded, rows, request_id)
        for label, count in collections.Counter(prediction.labels).items():
            self.metrics.predictions.labels(loaded.version, str(label)).inc(count)
        return json_response(prediction.to_dict())

    def too_many_rows(self, body: bytes, request_id: str) -> Response | None:
        """The 422 of a batch over the row limit, found before any row is validated."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # the validation that follows names the problem
        records = payload.get("records") if isinstance(payload, dict) else None
        if not isinstance(records, list) or len(records) <= self.max_rows:
            return None
        message = (f"a batch holds at most {self.max_rows} records (MODEL_MAX_BATCH_ROWS), "
                   f"this one has {len(records)}")
        return error_response(422, f"records: {message}", request_id,
                              [{"field": "records", "message": message}])
