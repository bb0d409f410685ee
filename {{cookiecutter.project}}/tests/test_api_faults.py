"""The service under faults: concurrent training, a changing registry, hostile log folders,
an unwritable log, tampered artifacts, oversized batches and unauthenticated bodies."""

import asyncio
import json
import logging
import os
import sys
import threading
import time
import types

import httpx
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package }} import data, logs, registry, training
from {{ cookiecutter.package }}.serving import service
from {{ cookiecutter.package }}.config import Settings

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RECORD = dict(data.SCHEMA.example)


def app_for(settings: Settings, **changes):
    """The app for ``settings`` with ``changes``."""
    return service.create_app(Settings(**{**settings.model_dump(), **changes}))


def artifact_folder(settings: Settings):
    """The current folder of the served model."""
    return registry.Registry(settings.registry_dir).resolve("model", settings.version)


# ----------------------------------------------------------------------------- training

@pytest.fixture
def blocked_training(monkeypatch):
    """``training.train`` waits for ``release`` after ``started``: a run that is going on."""
    started, release = threading.Event(), threading.Event()
    real_train = training.train

    def slow_train(settings, **options):
        started.set()
        assert release.wait(30)
        return real_train(settings, **options)

    monkeypatch.setattr(training, "train", slow_train)
    yield started, release
    release.set()


def test_a_second_worker_refuses_to_train_while_one_trains(served_settings, quick_training,
                                                           blocked_training):
    """Two apps on one registry, as two worker processes would be: one training at a time."""
    started, release = blocked_training
    first, second = (app_for(served_settings, admin_token=TOKEN) for _ in range(2))

    async def train_on_both():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first),
                                     base_url="http://first") as a, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=second),
                                  base_url="http://second") as b:
            running = asyncio.create_task(a.post("/train", headers=AUTH, timeout=60))
            assert await asyncio.to_thread(started.wait, 30)
            refused = await b.post("/train", headers=AUTH)
            health = await a.get("/health")  # the first app's loop is free meanwhile
            release.set()
            return await running, refused, health

    trained, refused, health = asyncio.run(train_on_both())
    assert (trained.status_code, refused.status_code, health.status_code) == (200, 409, 200)
    assert "already going on" in refused.json()["detail"]


def test_training_runs_off_the_event_loop(served_settings, quick_training, blocked_training):
    started, release = blocked_training
    app = app_for(served_settings, admin_token=TOKEN)

    async def health_while_training():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://service") as client:
            running = asyncio.create_task(client.post("/train", headers=AUTH, timeout=60))
            assert await asyncio.to_thread(started.wait, 30)
            answers = [await client.get("/health") for _ in range(3)]
            release.set()
            return answers, await running

    answers, trained = asyncio.run(health_while_training())
    assert [answer.status_code for answer in answers] == [200] * 3
    assert trained.status_code == 200


def test_predictions_are_answered_while_a_training_run_imports_pandas(
        served_settings, monkeypatch):
    # What the event loop sees while the training thread is half-way through `import pandas`.
    monkeypatch.setitem(sys.modules, "pandas", types.ModuleType("pandas"))
    with TestClient(app_for(served_settings)) as client:
        assert client.post("/predict", json={"records": [RECORD] * 2}).status_code == 200


def test_a_null_train_body_trains_with_the_defaults(served_settings, quick_training):
    with TestClient(app_for(served_settings, admin_token=TOKEN)) as client:
        answer = client.post("/train", content=b"null", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["test_mode"] is False


@pytest.mark.parametrize("body", [b"\x0b", b"\x0c", b" \x0b\n"])
def test_a_train_body_of_whitespace_json_does_not_allow_is_refused(served_settings, body):
    # Not an empty body (that trains with the defaults): vertical tabs and form feeds are not
    # JSON whitespace, though Python's bytes.strip() strips them.
    with TestClient(app_for(served_settings, admin_token=TOKEN)) as client:
        answer = client.post("/train", content=body,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 422
    assert "invalid JSON" in answer.json()["detail"]


def post_in_messages(app, path: str, chunks: list[bytes], *, endless: bool = False,
                     length: int | None = None):
    """POST a body to the ASGI ``app`` in one message per chunk, with no Content-Length (as
    a chunked upload arrives) unless ``length`` declares one; ``endless`` repeats the last
    chunk for ever. The messages the app sent back, and how many body messages it read."""
    received: list[bool] = []
    sent: list[dict] = []

    async def receive():
        index = len(received)
        received.append(True)
        more = endless or index < len(chunks) - 1
        return {"type": "http.request", "body": chunks[min(index, len(chunks) - 1)],
                "more_body": more}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("service", 80),
             "client": ("client", 1), "headers": [
                 (b"content-type", b"application/json"),
                 (b"transfer-encoding", b"chunked") if length is None
                 else (b"content-length", b"%d" % length)]}
    asyncio.run(app(scope, receive, send))
    return sent, len(received)


def test_train_checks_the_token_before_it_reads_the_body(served_settings):
    app = app_for(served_settings, admin_token=TOKEN)
    sent, read = post_in_messages(app, "/train", [b"x" * 1000], endless=True, length=1000000)
    assert sent[0]["status"] == 401
    assert read == 0


def test_a_prediction_body_in_several_messages_is_joined(served_settings):
    app = app_for(served_settings)
    app.state.model.load()
    body = json.dumps({"records": [RECORD] * 3}).encode()
    sent, read = post_in_messages(app, "/predict", [body[i:i + 40]
                                                    for i in range(0, len(body), 40)])
    assert sent[0]["status"] == 200 and read == -(-len(body) // 40)
    assert len(json.loads(sent[1]["body"])["predictions"]) == 3


def test_a_body_that_grows_past_the_limit_is_refused_and_no_longer_read(served_settings):
    app = app_for(served_settings, max_body_bytes=1024)
    app.state.model.load()
    sent, read = post_in_messages(app, "/predict", [b" " * 500], endless=True)
    assert sent[0]["status"] == 413
    assert "MODEL_MAX_BODY_BYTES" in json.loads(sent[1]["body"])["detail"]
    assert read == 3  # 1,500 bytes: the first read that crossed 1,024


def test_train_answers_401_before_it_judges_the_body(served_settings):
    with TestClient(app_for(served_settings, admin_token=TOKEN)) as client:
        answer = client.post("/train", content=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 401


@pytest.mark.parametrize("body, field", [(b"{not json", "body"), (b'{"test_mode": 1}', "test_mode"),
                                         (b'{"epochs": 3}', "epochs"), (b"[]", "body")])
def test_an_invalid_train_body_is_a_documented_422(served_settings, body, field):
    with TestClient(app_for(served_settings, admin_token=TOKEN)) as client:
        answer = client.post("/train", content=body, headers=AUTH)
        documented = client.get("/openapi.json").json()["paths"]["/train"]["post"]["responses"]
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == field
    assert set(answer.json()) == {"detail", "errors", "request_id"}
    assert documented["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse")


def test_a_train_log_that_cannot_be_written_is_a_503(served_settings, quick_training, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    with TestClient(app_for(served_settings, admin_token=TOKEN,
                            log_dir=tmp_path / "not-a-folder" / "logs")) as client:
        answer = client.post("/train", json={"test_mode": True}, headers=AUTH)
    assert answer.status_code == 503
    assert "train log cannot be written" in answer.json()["detail"]
    assert str(tmp_path) not in answer.text


# ----------------------------------------------------------------------------- the registry

def test_every_worker_serves_the_model_trained_elsewhere(served_settings, small_dataset,
                                                         quick_training):
    """A model trained by another process (a worker, the CLI) is served within the interval."""
    with TestClient(app_for(served_settings, reload_seconds=0.05)) as client:
        before = client.get("/model").json()["trained_at"]
        trained = training.train(served_settings, small_dataset)
        deadline = time.monotonic() + 10
        while client.get("/model").json()["trained_at"] == before:
            assert time.monotonic() < deadline, "the new model was not picked up"
            time.sleep(0.05)
        assert client.get("/model").json()["trained_at"] == trained.metadata["trained_at"]


def test_a_broken_new_model_leaves_the_served_one_and_is_not_reloaded_in_a_loop(
        served_settings, small_dataset, quick_training, monkeypatch):
    store = registry.Registry(served_settings.registry_dir)
    good = store.resolve("model", served_settings.version)
    broken = training.train(served_settings, small_dataset).path
    (broken / registry.SCORER_FILE).write_text("{}")
    store._swap_link("model", served_settings.version, good)
    app = app_for(served_settings, reload_seconds=0.05)
    with TestClient(app) as client:
        state = app.state.model
        served = client.get("/model").json()["trained_at"]
        loads = []
        real_load = state.load

        def counted_load():
            loads.append(1)
            return real_load()

        monkeypatch.setattr(state, "load", counted_load)
        store._swap_link("model", served_settings.version, broken)  # as a training run would
        time.sleep(1.0)
        assert client.get("/model").json()["trained_at"] == served
        assert len(loads) == 1
        assert client.get("/ready").status_code == 200


def test_start_up_removes_what_a_killed_training_left(served_settings):
    killed = served_settings.registry_dir / registry.ARTIFACTS_DIR / ".tmp-killed"
    killed.mkdir()
    with TestClient(app_for(served_settings)) as client:
        assert client.get("/ready").status_code == 200
    assert not killed.exists()


def test_a_read_only_registry_still_serves(served_settings, monkeypatch):
    def read_only(self):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(registry.Registry, "remove_abandoned", read_only)
    with TestClient(app_for(served_settings)) as client:
        assert client.get("/ready").status_code == 200


def test_edited_metadata_is_not_served(served_settings):
    path = artifact_folder(served_settings) / registry.METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["metrics"]["test"]["accuracy"] = 0.99
    path.write_text(json.dumps(metadata))
    with TestClient(app_for(served_settings)) as client:
        assert client.get("/model").status_code == 503
        assert client.get("/ready").status_code == 503
        assert "integrity check" in client.get("/ready").json()["reason"]


def test_refusals_give_clients_no_server_paths_or_checksums(served_settings, caplog):
    folder = artifact_folder(served_settings)
    (folder / registry.MODEL_FILE).write_bytes(b"tampered")
    with TestClient(app_for(served_settings)) as client:
        answers = [client.get("/ready"), client.get("/model"),
                   client.post("/predict", json=RECORD)]
    metadata = json.loads((folder / registry.METADATA_FILE).read_text())
    for answer in answers:
        assert answer.status_code == 503
        assert str(served_settings.registry_dir.parent) not in answer.text
        assert metadata["artifact_sha256"] not in answer.text
    assert f"{folder / registry.MODEL_FILE}: checksum mismatch" in caplog.text  # the operator's


# ----------------------------------------------------------------------------- the logs

@pytest.fixture
def api(served_settings):
    with TestClient(app_for(served_settings, admin_token=TOKEN)) as client:
        yield client


def test_a_link_named_like_a_log_is_neither_served_nor_listed(api, settings, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the content")
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    (settings.log_dir / "predict-2099-01.jsonl").symlink_to(secret)
    (settings.log_dir / "train-2099-01.jsonl").symlink_to("/etc/passwd")
    for name in ("predict-2099-01.jsonl", "train-2099-01.jsonl"):
        answer = api.get(f"/logs/{name}", headers=AUTH)
        assert answer.status_code == 404
        assert "the content" not in answer.text and "root:" not in answer.text
    assert api.get("/logs", headers=AUTH).json() == []


def test_a_dangling_link_leaves_the_log_list_working(api, settings):
    api.post("/predict", json=RECORD)
    (settings.log_dir / "predict-2099-02.jsonl").symlink_to(settings.log_dir / "gone")
    answer = api.get("/logs", headers=AUTH)
    assert answer.status_code == 200
    assert [entry["name"] for entry in answer.json()] == [
        logs.log_path(settings.log_dir, "predict").name]


def test_a_fifo_named_like_a_log_is_not_served(api, settings):
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(settings.log_dir / "predict-2099-03.jsonl")
    assert api.get("/logs/predict-2099-03.jsonl", headers=AUTH).status_code == 404
    assert api.get("/logs", headers=AUTH).json() == []


def test_a_log_is_served_as_it_was_when_it_was_opened(api, settings):
    api.post("/predict", json={"records": [RECORD] * 3})
    name = logs.log_path(settings.log_dir, "predict").name
    answer = api.get(f"/logs/{name}", headers=AUTH)
    assert answer.content == (settings.log_dir / name).read_bytes()
    assert answer.headers["content-length"] == str(len(answer.content))
    assert name in answer.headers["content-disposition"]


@pytest.fixture
def broken_log_dir(tmp_path):
    """A log folder that cannot be created (its parent is a file); ``fix()`` repairs it."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")

    def fix():
        blocker.unlink()

    return blocker / "logs", fix


def test_an_unwritable_log_refuses_predictions_and_readiness_once_per_episode(
        served_settings, broken_log_dir, caplog):
    log_dir, fix = broken_log_dir
    caplog.set_level(logging.INFO)
    with TestClient(app_for(served_settings, log_dir=log_dir)) as client:
        answers = [client.post("/predict", json=RECORD) for _ in range(3)]
        ready = client.get("/ready")
        metrics = client.get("/metrics").text
        fix()
        ready_again = client.get("/ready")
        after = client.post("/predict", json=RECORD)

    assert [answer.status_code for answer in answers] == [503] * 3
    assert "predict log cannot be written (Not a directory)" in answers[0].json()["detail"]
    assert str(log_dir) not in answers[0].text
    assert ready.status_code == 503 and "predict log" in ready.json()["reason"]
    assert "model_log_write_errors_total 3.0" in metrics
    failures = [r for r in caplog.records if "cannot write the predict log" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None  # no traceback per request
    assert ready_again.status_code == 200
    assert after.status_code == 200
    assert "can be written again" in caplog.text
    assert len(logs.read_log(log_dir, "predict")) == 1


def test_a_log_that_fails_only_once_recovers_at_the_next_prediction(
        served_settings, broken_log_dir):
    log_dir, fix = broken_log_dir
    with TestClient(app_for(served_settings, log_dir=log_dir)) as client:
        assert client.post("/predict", json=RECORD).status_code == 503
        fix()
        assert client.post("/predict", json=RECORD).status_code == 200
        assert client.get("/ready").status_code == 200


# ----------------------------------------------------------------------------- big batches

class CountingValidator:
    """A stand-in for a validator's ``validate_json`` that counts the bodies it is given."""

    def __init__(self, validate_json):
        self.validate_json, self.calls = validate_json, 0

    def __call__(self, body):
        self.calls += 1
        return self.validate_json(body)


def count_validations(endpoint) -> list[CountingValidator]:
    """Count the bodies each of the endpoint's validators (the strict twins, the documented
    type) is given."""
    counters = [CountingValidator(validate) for validate in (
        endpoint.strict_record, endpoint.strict_batch, endpoint.documented)]
    endpoint.strict_record, endpoint.strict_batch, endpoint.documented = counters
    return counters


@pytest.mark.parametrize("rows", [[RECORD] * 40, [{}] * 40, [0] * 40])
def test_a_batch_over_the_row_limit_is_refused_before_any_row_is_validated(
        served_settings, rows):
    app = app_for(served_settings, max_batch_rows=10)
    counters = count_validations(app.front.predict)
    with TestClient(app) as client:
        answer = client.post("/predict",
                             content=json.dumps({"records": rows}, separators=(",", ":")))
    assert answer.status_code == 422
    assert "at most 10 records (MODEL_MAX_BATCH_ROWS), this one has 40" in answer.json()["detail"]
    assert answer.json()["errors"] == [{"field": "records", "message": answer.json()["detail"][9:]}]
    assert [counter.calls for counter in counters] == [0, 0, 0]


@pytest.mark.parametrize("body", [
    json.dumps({"records": [RECORD] * 10}), "[" + "1," * 30 + "1]",
    '{"records": {"a": 1}' + " " * 30 + "}", "{" * 40])
def test_bodies_the_row_count_lets_through_are_validated_as_before(served_settings, body):
    with TestClient(app_for(served_settings, max_batch_rows=10)) as client:
        answer = client.post("/predict", content=body)
    assert answer.status_code == (200 if body.startswith('{"records": [') else 422)


# ----------------------------------------------------------------------------- the strict twins

@pytest.mark.parametrize("body, rows, calls", [
    (json.dumps(RECORD), 1, [1, 0, 0]),
    (json.dumps({"records": [RECORD, RECORD]}), 2, [0, 1, 0]),
    # The documented type validates what a twin refuses: a whole float for an integer...
    (json.dumps({**RECORD, "age": 34.0}), 1, [1, 0, 1]),
    (json.dumps({"records": [{**RECORD, "age": 34.0}]}), 1, [0, 1, 1]),
    # ...and a batch that does not look like one (its key written with an escape).
    ('{"\\u0072ecords": [' + json.dumps(RECORD) + "]}", 1, [1, 0, 1]),
])
def test_a_body_is_validated_by_the_twin_it_looks_like_then_by_the_documented_type(
        served_settings, body, rows, calls):
    app = app_for(served_settings)
    counters = count_validations(app.front.predict)
    with TestClient(app) as client:
        answer = client.post("/predict", content=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == rows
    assert [counter.calls for counter in counters] == calls


def test_a_body_the_twins_and_the_documented_type_refuse_is_answered_in_the_contract_s_words(
        served_settings):
    app = app_for(served_settings)
    counters = count_validations(app.front.predict)
    with TestClient(app) as client:
        answer = client.post("/predict", json={"records": [{**RECORD, "age": "old"}]})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "records.0.age"
    assert [counter.calls for counter in counters] == [0, 1, 1]
