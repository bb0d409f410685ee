"""``POST /predict`` as a plain ASGI endpoint, and the batching of concurrent predictions.

The model scores a row in microseconds, so the request path is what costs: the app hands
``/predict`` to this endpoint ahead of FastAPI's middleware and router. It validates the raw
body in one pass with pydantic-core's JSON parser and predicts on the event loop without a
thread hop; requests that arrive together are predicted and logged together. The log never
makes the loop wait on a file (``logs.LogWriter``): a slow disk is written to from a thread.

A prediction is given only once it is logged: when the predict log cannot be written, the
requests are refused with 503 (and ``/ready`` says not ready) rather than answered unlogged.

Event-loop time: a batch's rows are counted before any is validated, so a body of many tiny
rows is refused in the time it takes to parse it, and the largest accepted request costs what
``MODEL_MAX_BATCH_ROWS`` valid rows cost to validate, predict and log.
"""

import asyncio
import functools
import itertools

import orjson
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from .. import logs, scoring
from .api_types import PredictBodyTypes
from .model_state import ModelState
from .responses import JSON, JSON_WHITESPACE, error_items, error_response, error_summary

# The header of every prediction, besides its length and request id.
JSON_TYPE = (b"content-type", JSON.encode("latin-1"))


def too_large_message(max_body_bytes: int) -> str:
    """The ``detail`` of the 413 that refuses a body over the size limit."""
    return f"the request body is larger than {max_body_bytes} bytes (MODEL_MAX_BODY_BYTES)"


class PredictionBatcher:
    """Predicts the requests that arrive together in one model call and one log append.

    Under load, a request's rows are queued and one flush per turn of the event loop, scheduled
    with ``call_soon``, predicts them after the turn's other callbacks, which include the other
    requests whose bytes arrived in the same turn: the model's per-call cost and the log's
    append are paid once per batch instead of once per request. When the previous turn brought
    at most one request, the first one of a turn is predicted at once instead: nothing is
    likely to join it, and waiting for the end of the turn would only delay it.

    The batch's log lines go to the ``LogWriter``; the requests get their predictions only
    once the lines are written (``written``), so every answered prediction is in the log, and
    a failed write answers each of them 503. A request whose lines were written at once is
    answered without leaving its task: awaiting a future that is already done does not
    suspend.
    """

    def __init__(self, state: ModelState, writer: logs.LogWriter):
        self.state = state
        self.settings = state.settings
        self.writer = writer
        self.pending: list[tuple] = []
        self.turn_requests = 0  # requests that reached the batcher in this turn of the loop
        self.last_turn_requests = 0

    def submit(self, loaded: scoring.LoadedModel, rows: list, request_id: str) -> asyncio.Future:
        """Predict or queue a request's validated rows; the future gets its logged prediction.

        The future is done on return when the request was predicted and logged at once.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((loaded, rows, request_id, future))
        self.turn_requests += 1
        if self.turn_requests == 1:
            loop.call_soon(self.end_turn)  # runs after every callback due in this turn
            if self.last_turn_requests <= 1:
                self.flush()
                return future
        if len(self.pending) == 1:
            loop.call_soon(self.flush)
        return future

    def end_turn(self) -> None:
        """Count the turn that ended: how busy the next one is likely to be."""
        self.last_turn_requests, self.turn_requests = self.turn_requests, 0

    def flush(self) -> None:
        """Predict every queued request and hand its log lines to the writer."""
        pending, self.pending = self.pending, []
        # A model swapped in by a training run mid-batch predicts only what came after it.
        for loaded, same_model in itertools.groupby(pending, key=lambda item: item[0]):
            group = list(same_model)
            futures = [future for *_, future in group]
            try:
                predictions = scoring.predict_requests(
                    loaded, [(rows, request_id) for _, rows, request_id, _ in group])
                path, lines = logs.prediction_lines(
                    self.settings.log_dir, test_mode=False, model_version=loaded.version,
                    requests=[logs.PredictedRequest(p.request_id, p.runtime, rows, p.labels,
                                                    p.probabilities)
                              for p, (_, rows, _, _) in zip(predictions, group)],
                    log_inputs=self.settings.log_inputs)
            except Exception as error:  # noqa: BLE001 - each request reports it
                _settle(futures, [error] * len(group))
                continue
            self.writer.append(path, lines,
                               functools.partial(self.written, loaded, futures, predictions))

    def written(self, loaded: scoring.LoadedModel, futures: list, predictions: list,
                error: logs.LogWriteError | None) -> None:
        """Answer a batch once its lines are in the log, or refuse it when they are not."""
        if error is not None:
            self.state.log_failed(error)
            _settle(futures, [error] * len(futures))
            return
        if self.state.log_problem is not None:
            self.state.log_recovered()
        self.state.metrics.predicted(loaded.version,
                                     [label for p in predictions for label in p.labels])
        _settle(futures, predictions)


def _settle(futures: list[asyncio.Future], outcomes: list) -> None:
    for future, outcome in zip(futures, outcomes):
        if future.done():  # its request was cancelled (the client went away)
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class PredictEndpoint:
    """``POST /predict`` as a plain ASGI endpoint: validate, predict, log, answer.

    ``ServiceMiddleware`` sends the path here ahead of FastAPI's middleware, router and
    per-request dependency machinery, which together cost several times the model's
    microseconds, and without wrapping ``receive`` and ``send``: the endpoint itself enforces
    the body size limit on a chunked body, puts the request id in its answer's headers and
    returns its status for the metrics. The client's mistakes are answered here with a 4xx; a
    bug raises, and the middleware answers it with the one 500 of the service.
    """

    path = "/predict"  # the metrics' endpoint label

    def __init__(self, state: ModelState, body_types: PredictBodyTypes, writer: logs.LogWriter,
                 max_body_bytes: int):
        self.state = state
        # pydantic-core's validators themselves (TypeAdapter.validator, a documented
        # attribute): TypeAdapter.validate_json adds a Python call around the same validation.
        self.strict_record, self.strict_batch, self.documented = (
            TypeAdapter(kind).validator.validate_json
            for kind in (body_types.record, body_types.batch, body_types.documented))
        self.batcher = PredictionBatcher(state, writer)
        self.max_rows = state.settings.max_batch_rows
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> int:
        """Answer one request; return the status it was answered with.

        One coroutine from the request to its answer: a request waiting for its batch is
        resumed through as few frames as possible, which counts at thousands per second.
        """
        scope["route"] = self
        request_id = scope["request_id"]
        answer: bytes | Response
        loaded = self.state.loaded
        if scope["method"] != "POST":
            answer = error_response(405, "method not allowed: POST /predict", request_id,
                                    headers={"allow": "POST"})
        elif loaded is None:
            answer = error_response(503, f"no model is loaded: {self.state.problem}",
                                    request_id)
        else:
            message = await receive()
            body = message.get("body", b"")
            if message.get("more_body", False):
                body = await self.rest_of_body(receive, body)
            if len(body) > self.max_body_bytes:
                answer = error_response(413, too_large_message(self.max_body_bytes),
                                        request_id)
            else:
                rows = self.rows_of(body, request_id)
                if isinstance(rows, Response):
                    answer = rows
                else:
                    try:
                        prediction = await self.batcher.submit(loaded, rows, request_id)
                        answer = orjson.dumps(prediction.to_dict())
                    except logs.LogWriteError:  # counted and reported by the batcher
                        answer = error_response(
                            503, f"the prediction was not given: {self.state.log_problem}",
                            request_id)
        if isinstance(answer, bytes):
            status, body = 200, answer
            headers = [(b"content-length", b"%d" % len(body)), JSON_TYPE]
        else:
            status, body, headers = answer.status_code, answer.body, answer.raw_headers
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def rest_of_body(self, receive, first: bytes) -> bytes:
        """A body sent in several messages, joined; stops reading once it is over the limit."""
        chunks, received = [first], len(first)
        while received <= self.max_body_bytes:
            message = await receive()
            chunk = message.get("body", b"")
            received += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def rows_of(self, body: bytes, request_id: str) -> list | Response:
        """The validated rows of a body, or the response that refuses it."""
        if not body.strip(JSON_WHITESPACE):
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
        # The request types enforce data.validate_rows' rules, so they are not run twice. The
        # strict twin of the kind the body looks like validates first (a batch names its
        # "records"); a wrong guess costs only time, as what a twin refuses, the documented
        # type validates again, and only its refusal is answered.
        batch = b'"records"' in body
        try:
            payload = (self.strict_batch if batch else self.strict_record)(body)
            return payload["records"] if batch else [payload]
        except ValidationError:
            pass
        try:
            payload = self.documented(body)
        except ValidationError as error:
            items = error_items(error)
            return error_response(422, error_summary(items), request_id, items)
        return payload["records"] if "records" in payload else [payload]

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
