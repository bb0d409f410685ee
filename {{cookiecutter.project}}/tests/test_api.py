"""The HTTP API: the course's train, predict and logs endpoints, and what surrounds them."""

import json

import pytest
import uvicorn
from fastapi.testclient import TestClient

from {{ cookiecutter.package }} import data, loading, logs, scoring
from {{ cookiecutter.package }}.serving import service
from {{ cookiecutter.package }}.config import Settings

TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RECORD = dict(data.SCHEMA.example)


def client_for(settings: Settings, **changes) -> TestClient:
    """A client of the app for ``settings`` with ``changes``; use it in a ``with`` block."""
    return TestClient(service.create_app(Settings(**{**settings.model_dump(), **changes})))


@pytest.fixture
def api(served_settings):
    """A client of the service with a trained model and the admin endpoints on."""
    with client_for(served_settings, admin_token=TOKEN) as client:
        yield client


@pytest.fixture
def empty_api(settings):
    """A client of the service before any model was trained; admin endpoints on."""
    with client_for(settings, admin_token=TOKEN) as client:
        yield client


def test_health_answers_without_a_model(empty_api):
    answer = empty_api.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_readiness_is_false_before_a_model_exists(empty_api):
    answer = empty_api.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["ready"] is False
    assert "train it first" in answer.json()["reason"]


def test_predict_without_a_model_is_503_naming_the_cause(empty_api):
    answer = empty_api.post("/predict", json=RECORD)
    assert answer.status_code == 503
    assert "no model is loaded" in answer.json()["detail"]


def test_training_through_the_api_makes_the_service_ready(empty_api, quick_training):
    trained = empty_api.post("/train", json={"test_mode": False}, headers=AUTH)
    assert trained.status_code == 200
    assert empty_api.get("/ready").json() == {"ready": True, "model_version": "0.1",
                                              "reason": None}
    assert empty_api.post("/predict", json=RECORD).status_code == 200


def test_train_in_test_mode_stores_a_test_model_and_test_logs(api, settings, quick_training):
    answer = api.post("/train", json={"test_mode": True}, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["name"] == "test-model"
    assert answer.json()["test_mode"] is True
    assert loading.load_pipeline(settings, test_mode=True).name == "test-model"
    assert logs.read_log(settings.log_dir, "train", test_mode=True)
    assert not logs.read_log(settings.log_dir, "train")


def test_train_without_a_body_trains_the_served_version(api, quick_training):
    answer = api.post("/train", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["name"] == "model"


def test_readiness_is_true_with_a_model(api):
    assert api.get("/ready").json() == {"ready": True, "model_version": "0.1", "reason": None}


def test_a_valid_record_gets_a_valid_prediction(api):
    answer = api.post("/predict", json=RECORD)
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_version"] == "0.1"
    assert body["predictions"][0] in data.SCHEMA.classes
    assert 0.0 <= body["probabilities"][0] <= 1.0
    assert body["predictions"][0] == int(body["probabilities"][0] > 0.5)


def test_a_batch_gets_one_prediction_per_row_in_order(api, settings):
    frame = data.make_default_dataset(n_rows=25, seed=3)[data.FEATURES]
    records = frame.to_dict("records")
    answer = api.post("/predict", json={"records": records})
    assert answer.status_code == 200
    probabilities = answer.json()["probabilities"]
    assert len(probabilities) == 25
    assert probabilities == pytest.approx(
        loading.load_pipeline(settings).positive_probability(records).tolist())


def test_every_predicted_row_is_logged_with_the_request_id(api, settings):
    answer = api.post("/predict", json={"records": [RECORD] * 3},
                      headers={"X-Request-ID": "order-42"})
    entries = logs.read_log(settings.log_dir, "predict")
    assert [entry["request_id"] for entry in entries] == ["order-42"] * 3
    assert [entry["prediction"] for entry in entries] == answer.json()["predictions"]
    assert entries[0]["input"] == RECORD
    assert {"timestamp", "runtime", "model_version", "input_data_summary"} <= entries[0].keys()


def test_an_integer_written_with_a_zero_fraction_counts_as_that_integer(api, settings):
    answer = api.post("/predict", json={**RECORD, "age": 34.0})
    assert answer.status_code == 200
    logged = logs.read_log(settings.log_dir, "predict")[0]["input"]["age"]
    assert logged == 34 and isinstance(logged, int)


def test_the_request_id_header_is_echoed(api):
    answer = api.post("/predict", json=RECORD, headers={"X-Request-ID": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"
    assert answer.json()["request_id"] == "abc-123"


def test_a_request_without_an_id_gets_a_new_one(api):
    first, second = api.get("/health"), api.get("/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_an_unsafe_request_id_is_replaced(api):
    answer = api.post("/predict", json=RECORD, headers={"X-Request-ID": "a b\"<script>"})
    assert answer.headers["x-request-id"] != "a b\"<script>"
    assert answer.json()["request_id"] == answer.headers["x-request-id"]


@pytest.mark.parametrize("body, field, words", [
    (b"", "body", "empty"),
    (b"{not json", "body", "invalid JSON"),
    (b"null", "body", "object"),
    (b"[1, 2]", "body", "object"),
    (json.dumps({**RECORD, "age": "34"}).encode(), "age", "integer"),
    (json.dumps({**RECORD, "age": True}).encode(), "age", "integer"),
    (json.dumps({**RECORD, "age": 34.5}).encode(), "age", "integer"),
    (json.dumps({**RECORD, "age": 7}).encode(), "age", "age: value 7 is outside the range"),
    (json.dumps({**RECORD, "country": "atlantis"}).encode(), "country", "singapore"),
    (json.dumps({k: v for k, v in RECORD.items() if k != "age"}).encode(), "age",
     "age: missing field 'age'"),
    (json.dumps({**RECORD, "shoe_size": 44}).encode(), "shoe_size", "unexpected field"),
    (json.dumps({"records": []}).encode(), "records", "at least 1"),
    (json.dumps({"records": [RECORD, {**RECORD, "num_streams": -1}]}).encode(),
     "records.1.num_streams", "records.1.num_streams: value -1 is outside the range [0, 1000]"),
    (json.dumps({"records": [{**RECORD, "age": 34.0, "country": "x"}]}).encode(),
     "records.0.country", "records.0.country: unknown category 'x'"),
    (json.dumps({"records": [RECORD], "note": 1}).encode(), "note", "Extra inputs"),
])
def test_an_invalid_request_gets_a_422_naming_the_problem(api, settings, body, field, words):
    answer = api.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["errors"][0]["field"] == field
    assert words in problem["detail"]
    assert not logs.read_log(settings.log_dir, "predict")


def test_a_batch_over_the_row_limit_is_refused(served_settings):
    with client_for(served_settings, max_batch_rows=3) as client:
        answer = client.post("/predict", json={"records": [RECORD] * 4})
    assert answer.status_code == 422
    assert "at most 3" in answer.json()["detail"]


def test_an_oversized_body_is_refused_with_413(served_settings):
    with client_for(served_settings, max_body_bytes=1024) as client:
        answer = client.post("/predict", json={"records": [RECORD] * 50})
    assert answer.status_code == 413
    assert "MODEL_MAX_BODY_BYTES" in answer.json()["detail"]


def test_an_oversized_body_sent_in_chunks_is_refused_with_413(served_settings):
    chunks = [json.dumps({"records": [RECORD] * 50}).encode()[i:i + 500]
              for i in range(0, 5000, 500)]
    with client_for(served_settings, max_body_bytes=1024) as client:
        answer = client.post("/predict", content=iter(chunks),
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert "MODEL_MAX_BODY_BYTES" in answer.json()["detail"]


def test_predict_takes_only_post(api):
    answer = api.get("/predict")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


def test_a_server_bug_outside_predict_is_a_json_500(served_settings, monkeypatch):
    def broken(loaded):
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "_model_info", broken)
    with TestClient(service.create_app(served_settings), raise_server_exceptions=False) as client:
        answer = client.get("/model", headers={"X-Request-ID": "bug-2"})
    assert answer.status_code == 500
    assert answer.json()["request_id"] == "bug-2"


def test_request_metrics_are_what_a_prometheus_counter_and_histogram_expose():
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from {{ cookiecutter.package }}.serving import metrics

    # Every bucket's bound, values just around them, and a value past the last one.
    seconds = [b * f for b in metrics.LATENCY_BUCKETS for f in (0.5, 1.0, 1.0000001)] + [60.0]
    observed = [("/predict", "POST", 200), ("/predict", "POST", 422), ("/health", "GET", 200)]
    reference = CollectorRegistry()
    counter = Counter("http_requests", "HTTP requests by endpoint, method and status.",
                      metrics.REQUEST_LABELS, registry=reference)
    histogram = Histogram("http_request_duration_seconds",
                          "HTTP request latency by endpoint and status.",
                          metrics.REQUEST_LABELS, registry=reference,
                          buckets=metrics.LATENCY_BUCKETS)
    ours = CollectorRegistry()
    requests = metrics.RequestMetrics(ours)
    for i, value in enumerate(seconds):
        endpoint, method, status = observed[i % len(observed)]
        counter.labels(endpoint, method, str(status)).inc()
        histogram.labels(endpoint, method, str(status)).observe(value)
        requests.observe(endpoint, method, status, value)

    def exposition(registry) -> list[str]:  # sorted, creation times left out
        return sorted(line for line in generate_latest(registry).decode().splitlines()
                      if "_created{" not in line)

    assert exposition(ours) == exposition(reference)


def test_the_model_endpoint_describes_the_served_version(api):
    info = api.get("/model").json()
    assert info["model_version"] == "0.1"
    assert info["note"] == Settings().version_note
    assert info["trained_at"]
    assert 0.5 < info["metrics"]["test"]["roc_auc"] <= 1.0
    assert info["data"]["fingerprint"]


def test_the_model_endpoint_is_503_without_a_model(empty_api):
    assert empty_api.get("/model").status_code == 503


def test_metrics_count_requests_and_predictions_by_class(api):
    labels = api.post("/predict", json={"records": [RECORD] * 4}).json()["predictions"]
    api.post("/predict", json={})
    text = api.get("/metrics").text
    assert 'http_requests_total{endpoint="/predict",method="POST",status="200"} 1.0' in text
    assert 'http_requests_total{endpoint="/predict",method="POST",status="422"} 1.0' in text
    assert 'http_request_duration_seconds_count{endpoint="/predict"' in text
    label = labels[0]
    series = 'model_predictions_total' + '{' + f'model_version="0.1",prediction="{label}"' + '}'
    assert f"{series} {float(labels.count(label))}" in text
    assert 'model_info{model_version="0.1",name="model"} 1.0' in text


def test_unknown_paths_share_one_metrics_label(api):
    api.get("/no/such/path")
    assert 'endpoint="unmatched",method="GET",status="404"' in api.get("/metrics").text


@pytest.mark.parametrize("method, path", [("post", "/train"), ("get", "/logs"),
                                          ("get", "/logs/predict-2026-01.jsonl")])
def test_admin_endpoints_are_off_without_a_token(served_settings, method, path):
    with client_for(served_settings) as client:
        assert getattr(client, method)(path, headers=AUTH).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}])
def test_admin_endpoints_refuse_a_missing_or_wrong_token(api, headers):
    assert api.post("/train", json={"test_mode": True}, headers=headers).status_code == 401
    answer = api.get("/logs", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_logs_can_be_fetched_with_the_token(api, settings):
    api.post("/predict", json={"records": [RECORD] * 2})
    name = logs.log_path(settings.log_dir, "predict").name
    assert {"name": name, "bytes": (settings.log_dir / name).stat().st_size} in (
        api.get("/logs", headers=AUTH).json())
    answer = api.get(f"/logs/{name}", headers=AUTH)
    assert answer.status_code == 200
    lines = answer.text.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["input"] == RECORD


@pytest.mark.parametrize("name", ["..%2Fsecret.txt", "..", "predict-2026-01.jsonl.bak",
                                  "secret.txt", "predict-1999-01.jsonl"])
def test_logs_refuse_anything_but_an_existing_log_file(api, settings, name):
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    (settings.log_dir / "secret.txt").write_text("the content")
    (settings.log_dir.parent / "secret.txt").write_text("the content")
    answer = api.get(f"/logs/{name}", headers=AUTH)
    assert answer.status_code == 404
    assert "the content" not in answer.text


def test_the_openapi_schema_documents_the_strict_record(api):
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    record = schemas["Record"]
    assert record["additionalProperties"] is False
    assert set(record["required"]) == set(data.FEATURES)
    assert record["properties"]["age"]["minimum"] == 18
    assert record["properties"]["country"]["enum"] == ["singapore", "united_states"]
    assert schemas["Batch"]["properties"]["records"]["maxItems"] == Settings().max_batch_rows


def test_a_server_bug_is_a_json_500_with_the_request_id(served_settings, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(scoring, "predict_requests", broken)
    app = service.create_app(served_settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/predict", json=RECORD, headers={"X-Request-ID": "bug-1"})
    assert answer.status_code == 500
    assert answer.json()["request_id"] == "bug-1"


def test_every_500_is_the_one_answer_of_server_error(served_settings, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(scoring, "predict_requests", broken)
    monkeypatch.setattr(service, "_model_info", broken)
    answered: list[str] = []
    real = service.server_error

    def server_error(scope):
        answered.append(scope["path"])
        return real(scope)

    monkeypatch.setattr(service, "server_error", server_error)
    with TestClient(service.create_app(served_settings),
                    raise_server_exceptions=False) as client:
        fast = client.post("/predict", json=RECORD, headers={"X-Request-ID": "bug-1"})
        routed = client.get("/model", headers={"X-Request-ID": "bug-2"})
        metrics = client.get("/metrics").text
    assert answered == ["/predict", "/model"]
    assert fast.status_code == routed.status_code == 500
    assert {**fast.json(), "request_id": None} == {**routed.json(), "request_id": None}
    assert fast.headers["x-request-id"] == "bug-1"
    assert routed.headers["x-request-id"] == "bug-2"  # FastAPI's 500 passes the middleware too
    assert 'http_requests_total{endpoint="/predict",method="POST",status="500"} 1.0' in metrics
    assert 'http_requests_total{endpoint="/model",method="GET",status="500"} 1.0' in metrics


def test_the_middleware_is_built_once_and_serves_every_path(served_settings, monkeypatch):
    built: list[service.ServiceMiddleware] = []
    real_init = service.ServiceMiddleware.__init__

    def init(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(service.ServiceMiddleware, "__init__", init)
    with TestClient(service.create_app(served_settings)) as client:
        answers = [client.post("/predict", json=RECORD), client.get("/health"),
                   client.get("/nowhere")]
    assert len(built) == 1
    assert all(len(answer.headers["x-request-id"]) == 32 for answer in answers)


def test_request_ids_are_unique_within_and_across_apps(served_settings):
    ids = []
    for _ in range(2):  # two apps, as two worker processes (or a restart) have
        with TestClient(service.create_app(served_settings)) as client:
            ids += [client.post("/predict", json=RECORD).json()["request_id"]
                    for _ in range(20)]
    assert len(set(ids)) == 40
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_run_serves_with_production_settings(monkeypatch, settings):
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: calls.append((app, options)))
    assert service.run(settings) == 0
    app, options = calls[0]
    assert options["workers"] == 1 and options["access_log"] is False
    assert "reload" not in options
    # uvicorn serves the app's front as it is: an ASGI 3 callable, wrapped in nothing.
    assert isinstance(app, service.ServiceMiddleware)
    config = uvicorn.Config(app, **options, log_config=None)  # leaves logging as it is
    config.load()
    assert config.interface == "asgi3" and config.loaded_app is app


def test_run_with_several_workers_builds_the_app_in_each(monkeypatch, settings):
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: calls.append((app, options)))
    service.run(Settings(workers=2))
    app, options = calls[0]
    assert app == "{{ cookiecutter.package }}.serving.service:app_from_environment"
    assert options["factory"] is True and options["workers"] == 2
    config = uvicorn.Config(app, **options, log_config=None)  # leaves logging as it is
    config.load()
    assert isinstance(config.loaded_app, service.ServiceMiddleware)
    assert config.interface == "asgi3"
