"""The peer benchmark's own rules (benchmarks/peers.py, run by `make bench-peers`).

The full run installs MLServer and MLflow and takes minutes; these tests pin down how it
talks to each peer and reads their answers, and the shape of MLServer's settings.
"""

import json

import pytest

import baking
from conftest import load_module

SCRIPT = baking.TEMPLATE_DIR / "benchmarks" / "peers.py"
RECORDS = [
    {"country": "singapore", "age": 30, "subscriber_type": "aavail_basic", "num_streams": 12},
    {"country": "united_states", "age": 61, "subscriber_type": "aavail_unlimited",
     "num_streams": 0},
]


@pytest.fixture(scope="module")
def peers():
    """The peer benchmark script, imported as a module."""
    return load_module(SCRIPT, "peers")


def test_mlserver_request_sends_one_typed_column_per_feature(peers):
    request = json.loads(peers.mlserver_request(RECORDS))
    assert request["parameters"] == {"content_type": "pd"}
    assert request["outputs"] == [{"name": "predict_proba"}]
    columns = {item["name"]: item for item in request["inputs"]}
    assert list(columns) == list(RECORDS[0])
    assert columns["country"]["data"] == ["singapore", "united_states"]
    assert columns["country"]["datatype"] == "BYTES"
    assert columns["country"]["parameters"] == {"content_type": "str"}
    assert columns["age"] == {"name": "age", "datatype": "INT64", "shape": [2], "data": [30, 61]}


@pytest.mark.parametrize("server, answer", [
    ("MLServer", {"outputs": [{"name": "predict_proba", "shape": [2, 2],
                               "data": [0.9, 0.1, 0.25, 0.75]}]}),
    ("MLflow", {"predictions": [[0.9, 0.1], [0.25, 0.75]]}),
    ("service", {"predictions": [0, 1], "probabilities": [0.1, 0.75]}),
])
def test_each_servers_answer_gives_the_probability_of_class_one(peers, server, answer):
    assert peers.positive_probabilities(server, json.dumps(answer).encode()) == [0.1, 0.75]


def test_mlserver_settings_serve_the_joblib_file_offline_in_process(peers, tmp_path):
    (tmp_path / "pipeline.joblib").write_bytes(b"fitted")
    peers.mlserver_repository(tmp_path / "mlserver", tmp_path / "pipeline.joblib", 9000, 9001,
                              9002)
    folder = tmp_path / "mlserver"
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["host"] == "127.0.0.1" and settings["parallel_workers"] == 0
    assert {settings["http_port"], settings["grpc_port"], settings["metrics_port"]} == {
        9000, 9001, 9002}
    model = json.loads((folder / "model-settings.json").read_text())
    assert model["implementation"] == "mlserver_sklearn.SKLearnModel"
    assert (folder / model["parameters"]["uri"]).read_bytes() == b"fitted"


def test_every_peer_is_pinned_to_an_exact_version(peers):
    for packages in peers.PEERS.values():
        assert packages and all("==" in package for package in packages)
