"""Concurrent predictions: n predicted rows give n whole log lines, none lost or mixed up."""

import asyncio
import threading

import httpx
import orjson
from fastapi.testclient import TestClient

from {{ cookiecutter.package }} import data, logs
from {{ cookiecutter.package }}.serving import service

RECORD = dict(data.SCHEMA.example)


def logged_lines(settings) -> list[bytes]:
    """The raw lines of the predict log."""
    return logs.log_path(settings.log_dir, "predict").read_bytes().splitlines()


async def predict_concurrently(app, bodies: list[dict]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await asyncio.gather(*(
            client.post("/predict", json=body, headers={"X-Request-ID": f"req-{i}"})
            for i, body in enumerate(bodies)))


def test_concurrent_requests_give_one_whole_log_line_per_row(served_settings):
    app = service.create_app(served_settings)
    app.state.model.load()  # what the app's startup does
    bodies = [RECORD if i % 2 else {"records": [RECORD] * (i % 7 + 1)} for i in range(200)]

    answers = asyncio.run(predict_concurrently(app, bodies))
    app.state.log_writer.close()

    assert all(answer.status_code == 200 for answer in answers)
    rows = sum(1 if "records" not in body else len(body["records"]) for body in bodies)
    lines = logged_lines(served_settings)
    assert len(lines) == rows
    entries = [orjson.loads(line) for line in lines]  # every line is whole JSON
    by_request: dict = {}
    for entry in entries:
        by_request.setdefault(entry["request_id"], []).append(entry["prediction"])
    for i, answer in enumerate(answers):
        assert by_request[f"req-{i}"] == answer.json()["predictions"]


def test_concurrent_requests_are_predicted_together(served_settings):
    app = service.create_app(served_settings)
    app.state.model.load()
    asyncio.run(predict_concurrently(app, [RECORD] * 50))
    app.state.log_writer.close()
    # One batch writes one append with one timestamp for all its requests.
    timestamps = {orjson.loads(line)["timestamp"] for line in logged_lines(served_settings)}
    assert len(timestamps) < 50


def test_two_workers_logging_at_once_lose_no_line(served_settings):
    """Two apps (as two worker processes would) on threads, appending to the same log."""
    per_worker, batch = 60, {"records": [RECORD] * 5}
    failures = []

    # Each app is built before the threads start, as each worker process builds its own.
    # Built at the same moment on two threads, pydantic's schema generation for FastAPI's
    # body field races and may warn that an alias has no effect.
    apps = {name: service.create_app(served_settings) for name in ("a", "b")}

    def worker(name: str) -> None:
        with TestClient(apps[name]) as client:
            for i in range(per_worker):
                answer = client.post("/predict", json=batch if i % 2 else RECORD,
                                     headers={"X-Request-ID": f"{name}-{i}"})
                if answer.status_code != 200:
                    failures.append(answer.text)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    lines = logged_lines(served_settings)
    assert len(lines) == 2 * (per_worker // 2) * (1 + 5)
    assert all(orjson.loads(line)["input"] == RECORD for line in lines)


def test_batched_predictions_are_counted_by_class(served_settings):
    app = service.create_app(served_settings)
    app.state.model.load()
    bodies = [{"records": [RECORD] * (i % 5 + 1)} for i in range(40)]
    answers = asyncio.run(predict_concurrently(app, bodies))
    app.state.log_writer.close()
    labels = [label for answer in answers for label in answer.json()["predictions"]]
    counted = {sample.labels["prediction"]: sample.value
               for metric in app.state.metrics.predictions.collect()
               for sample in metric.samples if sample.name.endswith("_total")}
    assert counted == {str(label): float(labels.count(label)) for label in set(labels)}


def test_the_predict_log_is_opened_off_the_event_loop(served_settings, writes_and_opens):
    app = service.create_app(served_settings)
    app.state.model.load()
    answers = asyncio.run(predict_concurrently(app, [RECORD] * 20))  # the loop: this thread
    app.state.log_writer.close()
    assert [answer.status_code for answer in answers] == [200] * 20
    opening = [thread for kind, thread in writes_and_opens if kind == "open"]
    assert opening and threading.get_ident() not in opening
    assert len(logged_lines(served_settings)) == 20


def test_a_lone_request_is_answered_at_once_and_concurrent_ones_in_batches(
        served_settings, monkeypatch, no_slow_writes):
    app = service.create_app(served_settings)
    app.state.model.load()
    assert isinstance(app, service.ServiceApp)
    batcher, writer = app.front.predict.batcher, app.state.log_writer
    done_on_return: list[bool] = []
    appended: list[int] = []
    real_submit, real_append = batcher.submit, writer.append

    def submit(*args):
        future = real_submit(*args)
        done_on_return.append(future.done())
        return future

    def append(path, lines, then):
        appended.append(len(lines))
        real_append(path, lines, then)

    monkeypatch.setattr(batcher, "submit", submit)
    monkeypatch.setattr(writer, "append", append)

    async def one_at_a_time_then_together():
        for _ in range(3):
            await predict_concurrently(app, [RECORD])
            await asyncio.sleep(0.01)  # quiet turns of the loop in between
        lone = list(done_on_return)
        appended.clear()
        answers = await predict_concurrently(app, [RECORD] * 30)
        return lone, answers

    lone, answers = asyncio.run(one_at_a_time_then_together())
    writer.close()
    # The first opens the log (on the writer's thread); the others are predicted, logged and
    # answered without leaving their task.
    assert lone == [False, True, True]
    assert [answer.status_code for answer in answers] == [200] * 30
    assert sum(appended) == 30 and len(appended) < 30  # fewer appends than requests
    assert len(logged_lines(served_settings)) == 33


def test_shutdown_writes_the_log_lines_still_queued(served_settings, slow_log_writes):
    app = service.create_app(served_settings)
    path = str(logs.log_path(served_settings.log_dir, "predict"))
    with TestClient(app) as client:
        client.post("/predict", json=RECORD)  # what a prediction writes

        async def queue_without_waiting():
            for i in range(30):
                app.state.log_writer.append(path, [b'{"queued":%d}' % i], lambda error: None)

        assert client.portal is not None  # the app's loop, while the client is open
        client.portal.call(queue_without_waiting)
    # Leaving the block shut the app down: the lines queued before were written first.
    lines = logged_lines(served_settings)
    assert [orjson.loads(line).get("queued") for line in lines] == [None, *range(30)]
