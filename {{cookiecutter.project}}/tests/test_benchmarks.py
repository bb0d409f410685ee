"""The serving benchmark's parts: its records, its fallback load generator, its statistics."""

import sys
from pathlib import Path

import orjson
import pytest

from {{ cookiecutter.package }} import data, loading

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import flask_course  # noqa: E402 - the benchmarks folder is not a package
import loadgen  # noqa: E402
import serving  # noqa: E402
from servers import Placement, Spread, rotated  # noqa: E402


def test_batch_records_are_distinct_and_valid():
    records = serving.distinct_records(500)
    assert len({tuple(record.values()) for record in records}) == 500
    assert data.validate_rows(records) == records


@pytest.fixture
def answering_server(status_server):
    """200 for a body of ``ok``, 422 for anything else."""
    return status_server(lambda body: 200 if body == b"ok" else 422) + "/predict"


def test_fallback_generator_counts_responses_over_keep_alive(answering_server, monkeypatch):
    monkeypatch.setenv("BENCH_GENERATOR", "python")
    load = loadgen.measure(answering_server, b"ok", connections=2, seconds=1)
    assert load.generator == "python"
    assert load.responses > 10 and load.errors == 0
    assert load.rate > 0 and 0 < load.p50_ms <= load.p99_ms


def test_fallback_generator_counts_error_statuses_as_errors(answering_server, monkeypatch):
    monkeypatch.setenv("BENCH_GENERATOR", "python")
    load = loadgen.measure(answering_server, b"bad", connections=1, seconds=1)
    assert load.responses > 0 and load.errors == load.responses
    assert load.rate == 0


def test_an_unknown_generator_is_refused(monkeypatch):
    monkeypatch.setenv("BENCH_GENERATOR", "ab")
    with pytest.raises(SystemExit, match="BENCH_GENERATOR"):
        loadgen.generator()


def test_spread_reports_median_and_range():
    assert Spread((3.0, 1.0, 2.0, 10.0)).format(".1f", " ms") == "2.5 ms [1.0-10.0]"


def test_every_phase_takes_every_position_over_the_rounds():
    phases = ["a", "b", "c"]
    firsts = {rotated(phases, number)[0] for number in range(3)}
    assert firsts == set(phases)
    assert all(sorted(rotated(phases, number)) == phases for number in range(5))


def test_every_phase_starts_after_the_page_cache_is_flushed(monkeypatch):
    events = []
    monkeypatch.setattr(serving.os, "sync", lambda: events.append("sync"))
    monkeypatch.setattr(serving.loadgen, "measure",
                        lambda url, body, connections, seconds, cpu: events.append(url))

    class Server:
        def url(self, path):
            return path

    phases = [serving.Phase("a", "record", 1), serving.Phase("a", "record", 32)]
    results = serving.run_rounds(phases, {"a": Server()}, {"record": b"{}"},
                                 Placement.choose(pin=False), rounds=2, seconds=1, warmup=1)
    assert events == ["sync", "/predict"] * 6
    assert all(len(loads) == 2 for loads in results.values())


def test_ratio_verdicts_follow_the_target_direction():
    assert serving.Ratio("share", (0.5, 0.7, 0.65), "x", 0.6).describe().endswith(": MET")
    assert serving.Ratio("p50", (0.3, 0.4), " ms", 0.25, at_least=False).describe().endswith(
        ": MISSED")
    assert "target" not in serving.Ratio("plain", (1.0,), "x").describe()


def test_placement_without_pinning_names_no_cpu():
    placement = Placement.choose(pin=False)
    assert placement.server is placement.generator is None
    assert "not pinned" in placement.describe()


def test_course_style_app_predicts_like_the_service(served_settings):
    records = serving.distinct_records(20)
    client = flask_course.create_app().test_client()
    answer = client.post("/predict", json={"records": records})
    assert answer.status_code == 200
    expected = loading.load_model(served_settings).positive_probability(records)
    assert answer.get_json()["probabilities"] == pytest.approx(expected.tolist(), abs=1e-9)


@pytest.mark.parametrize("body", [b"not json", b"[]", orjson.dumps(
    {**data.SCHEMA.example, data.FEATURES[0]: "no such category"})])
def test_course_style_app_answers_bad_input_with_400(served_settings, body):
    client = flask_course.create_app().test_client()
    answer = client.post("/predict", data=body, content_type="application/json")
    assert answer.status_code == 400
