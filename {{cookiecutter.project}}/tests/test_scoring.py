"""Serving from the scoring spec: numpy only, verified at training, refused when modified."""

import copy
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from {{ cookiecutter.package }} import data, loading, pipeline_scoring, registry, scoring, training
from {{ cookiecutter.package }}.registry import IntegrityError, Registry
from {{ cookiecutter.package }}.serving import service

EXAMPLE = data.SCHEMA.example
HEAVY = ("sklearn", "scipy", "skops", "pandas")

# Run in a fresh interpreter: the test process itself has imported scikit-learn to train.
# The command line is imported too: the image serves through it (`model serve`).
SERVE_AND_LIST_MODULES = """
import json, sys
from fastapi.testclient import TestClient
import {{ cookiecutter.package }}.cli
from {{ cookiecutter.package }}.config import Settings
from {{ cookiecutter.package }}.serving.service import create_app

app = create_app(Settings(registry_dir=sys.argv[1], log_dir=sys.argv[2]))
with TestClient(app) as client:
    ready = client.get("/ready").json()
    answer = client.post("/predict", json=json.loads(sys.argv[3]))
print(json.dumps({"ready": ready, "status": answer.status_code, "answer": answer.json(),
                  "loaded": sorted(name for name in json.loads(sys.argv[4])
                                   if name in sys.modules)}))
"""


def artifact_of(settings, test_mode=False):
    """The current artifact folder of the configured version."""
    return Registry(settings.registry_dir).resolve(registry.artifact_name(test_mode),
                                                   settings.version)


def spec_of(settings, test_mode=False):
    """The stored scoring spec of the configured version."""
    return json.loads((artifact_of(settings, test_mode) / registry.SCORER_FILE).read_text())


def rewrite_spec(settings, spec, test_mode=False):
    """Store another spec with a matching checksum, as a consistent edit of both files would."""
    rewrite_spec_file(settings, json.dumps(spec).encode(), test_mode)


def rewrite_spec_file(settings, payload: bytes, test_mode=False):
    """Store ``payload`` (JSON or not) as the spec file, with a matching checksum."""
    folder = artifact_of(settings, test_mode)
    (folder / registry.SCORER_FILE).write_bytes(payload)
    metadata = json.loads((folder / registry.METADATA_FILE).read_text())
    metadata["scorer_sha256"] = registry.sha256_bytes(payload)
    (folder / registry.METADATA_FILE).write_text(json.dumps(metadata))
    registry.write_checksums(folder)


def test_the_service_serves_the_default_model_without_the_scientific_stack(
        served_settings, tmp_path):
    assert "scorer_sha256" in Registry(served_settings.registry_dir).metadata("model", "0.1")
    completed = subprocess.run(
        [sys.executable, "-c", SERVE_AND_LIST_MODULES, str(served_settings.registry_dir),
         str(tmp_path / "subprocess-logs"), json.dumps(EXAMPLE), json.dumps(HEAVY)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["ready"]["ready"] is True
    assert outcome["status"] == 200
    assert outcome["loaded"] == []


def test_the_served_prediction_equals_the_pipelines(served_settings):
    served = loading.load_model(served_settings)
    pipeline = loading.load_pipeline(served_settings).pipeline
    frame = pipeline_scoring.check_records()
    np.testing.assert_allclose(served.positive_probability(frame.to_dict("records")),
                               pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-9)


def test_small_requests_are_scored_in_plain_python_like_numpy(served_settings, monkeypatch):
    served = loading.load_model(served_settings)
    assert served.scorer is not None
    rows = pipeline_scoring.check_records(scoring.PLAIN_ROWS + 1).to_dict("records")
    numpy_way = served.positive_probability(rows).tolist()
    plain = served.scorer.row_probabilities(rows)
    np.testing.assert_allclose(plain, numpy_way, rtol=0, atol=1e-12)
    assert all(isinstance(p, float) for p in plain)

    # What the service calls: plain Python up to PLAIN_ROWS rows, numpy beyond.
    def numpy_is_not_used(records):
        raise AssertionError("numpy was used for a small request")

    monkeypatch.setattr(served, "positive_probability", numpy_is_not_used)
    assert served.probabilities(rows[:scoring.PLAIN_ROWS]) == plain[:scoring.PLAIN_ROWS]
    with pytest.raises(AssertionError):
        served.probabilities(rows[:scoring.PLAIN_ROWS + 1])


def test_plain_python_scoring_gives_finite_probabilities_at_extreme_scores(served_settings):
    scorer = loading.load_model(served_settings).scorer
    assert scorer is not None
    row = dict(EXAMPLE)
    for sign in (1, -1):  # a score far beyond what exp() takes, both ways
        scorer._intercept = sign * 1e6
        assert scorer.row_probabilities([row]) == [1.0 if sign > 0 else 0.0]


def test_a_scorer_whose_plain_python_disagrees_is_refused(served_settings, monkeypatch):
    pipeline = loading.load_pipeline(served_settings).pipeline
    scorer = loading.load_model(served_settings).scorer
    assert scorer is not None
    assert pipeline_scoring.agrees_with(scorer, pipeline)
    monkeypatch.setattr(scorer, "row_probabilities",
                        lambda rows: [0.5] * len(rows))  # numpy's way still agrees
    assert not pipeline_scoring.agrees_with(scorer, pipeline)


def test_a_model_served_from_its_spec_has_no_pipeline(served_settings):
    served = loading.load_model(served_settings)
    assert served.pipeline is None
    assert isinstance(served.scorer, scoring.NumpyScorer)
    assert (served.name, served.version) == ("model", "0.1")


def test_training_stores_the_spec_with_its_checksum(loaded):
    payload = (loaded.path / registry.SCORER_FILE).read_bytes()
    assert loaded.metadata["scorer_sha256"] == registry.sha256_bytes(payload)
    spec = json.loads(payload)
    assert spec["classifier"]["kind"] == scoring.LOGISTIC
    assert spec["features"] == data.FEATURES


def test_the_stored_spec_is_derived_from_the_stored_pipeline(loaded):
    stored = json.loads((loaded.path / registry.SCORER_FILE).read_text())
    assert stored == pipeline_scoring.scoring_spec(loaded.pipeline)


def test_a_random_forest_gets_no_spec_and_is_served_from_its_pipeline(
        settings, small_dataset, monkeypatch, caplog):
    monkeypatch.setattr(training, "candidate_models", lambda seed=training.SEED: {
        "random_forest": RandomForestClassifier(n_estimators=5, random_state=seed)})
    with caplog.at_level(logging.INFO, logger=pipeline_scoring.__name__):
        result = training.train(settings, small_dataset)
    assert "RandomForestClassifier needs scikit-learn" in caplog.text
    assert not (result.path / registry.SCORER_FILE).exists()
    assert "scorer_sha256" not in result.metadata
    served = loading.load_model(settings)
    assert served.pipeline is not None
    with TestClient(service.create_app(settings)) as client:
        answer = client.post("/predict", json=EXAMPLE)
    assert answer.status_code == 200
    assert answer.json()["probabilities"] == served.positive_probability([EXAMPLE]).tolist()


def test_a_spec_that_disagrees_with_the_pipeline_is_not_stored(
        settings, small_dataset, monkeypatch, quick_training, caplog):
    monkeypatch.setattr(scoring.NumpyScorer, "positive_probability",
                        lambda self, columns: np.zeros(len(next(iter(columns.values())))))
    result = training.train(settings, small_dataset)
    assert not (result.path / registry.SCORER_FILE).exists()
    assert "disagrees with the pipeline" in caplog.text


def test_a_spec_that_does_not_parse_back_is_not_stored(
        settings, small_dataset, monkeypatch, quick_training, caplog):
    scoring_spec = pipeline_scoring.scoring_spec
    monkeypatch.setattr(pipeline_scoring, "scoring_spec",
                        lambda pipeline: {**scoring_spec(pipeline), "width": 0})
    result = training.train(settings, small_dataset)
    assert not (result.path / registry.SCORER_FILE).exists()
    assert "width must be a positive integer" in caplog.text


def test_a_registry_without_specs_is_served_from_the_pipeline(served_settings):
    folder = artifact_of(served_settings)
    metadata = json.loads((folder / registry.METADATA_FILE).read_text())
    del metadata["scorer_sha256"]
    (folder / registry.METADATA_FILE).write_text(json.dumps(metadata))
    registry.write_checksums(folder)
    (folder / registry.SCORER_FILE).unlink()
    served = loading.load_model(served_settings)
    assert served.pipeline is not None
    assert served.self_check()


def test_a_modified_spec_is_refused_naming_the_file(served_settings):
    path = artifact_of(served_settings) / registry.SCORER_FILE
    path.write_text(path.read_text().replace('"intercept": ', '"intercept": 1'))
    with pytest.raises(IntegrityError, match=rf"{registry.SCORER_FILE}: checksum mismatch"):
        loading.load_model(served_settings)


def test_a_modified_pipeline_is_refused_although_the_spec_serves(served_settings):
    with open(artifact_of(served_settings) / registry.MODEL_FILE, "r+b") as stream:
        stream.seek(100)
        stream.write(b"tampered")
    with pytest.raises(IntegrityError, match=rf"{registry.MODEL_FILE}: checksum mismatch"):
        loading.load_model(served_settings)


def test_a_spec_that_is_not_json_is_refused(served_settings):
    folder = artifact_of(served_settings)
    (folder / registry.SCORER_FILE).write_bytes(b"{not json")
    metadata = json.loads((folder / registry.METADATA_FILE).read_text())
    metadata["scorer_sha256"] = registry.sha256_bytes(b"{not json")
    (folder / registry.METADATA_FILE).write_text(json.dumps(metadata))
    registry.write_checksums(folder)
    with pytest.raises(IntegrityError, match=rf"{registry.SCORER_FILE}: not JSON"):
        loading.load_model(served_settings)


def test_a_malformed_spec_with_a_matching_checksum_is_refused(served_settings):
    spec = spec_of(served_settings)
    spec["classifier"]["coef"] = spec["classifier"]["coef"][:-1]
    rewrite_spec(served_settings, spec)
    with pytest.raises(IntegrityError, match="not a usable scoring spec"):
        loading.load_model(served_settings)


def test_the_service_is_not_ready_with_a_modified_spec(served_settings):
    path = artifact_of(served_settings) / registry.SCORER_FILE
    path.write_text(path.read_text() + " ")
    with TestClient(service.create_app(served_settings)) as client:
        ready = client.get("/ready")
        predicted = client.post("/predict", json=EXAMPLE)
    assert ready.status_code == 503
    assert registry.SCORER_FILE in ready.json()["reason"]
    assert predicted.status_code == 503


def test_the_service_keeps_its_model_when_the_spec_is_modified(served_settings):
    app = service.create_app(served_settings)
    with TestClient(app) as client:
        before = app.state.model.loaded
        path = artifact_of(served_settings) / registry.SCORER_FILE
        path.write_text(path.read_text() + " ")
        assert app.state.model.load() is False
        assert app.state.model.loaded is before
        assert client.post("/predict", json=EXAMPLE).status_code == 200


def test_a_model_that_fails_its_self_check_is_not_served(served_settings, monkeypatch):
    monkeypatch.setattr(scoring.LoadedModel, "self_check", lambda self: False)
    with TestClient(service.create_app(served_settings)) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert "self-check" in ready.json()["reason"]


def test_a_pipeline_of_another_shape_gets_no_spec(loaded, caplog):
    pipeline = Pipeline([("identity", FunctionTransformer()), *loaded.pipeline.steps])
    with caplog.at_level(logging.INFO, logger=pipeline_scoring.__name__):
        assert pipeline_scoring.verified_scorer_spec(pipeline) is None
    assert "no scoring spec: unsupported pipeline shape" in caplog.text


@pytest.fixture(scope="module")
def valid_spec(small_dataset):
    """A spec derived from a fitted logistic regression."""
    frame = small_dataset
    pipeline = training.build_pipeline(training.candidate_models()["logistic_regression"])
    return pipeline_scoring.scoring_spec(pipeline.fit(frame[data.FEATURES], frame[data.TARGET]))


def test_a_valid_spec_scores_within_the_unit_interval(valid_spec):
    scorer = scoring.NumpyScorer(valid_spec)
    probability = scorer.positive_probability({name: [EXAMPLE[name]] for name in data.FEATURES})
    assert 0.0 < probability[0] < 1.0


def change(spec, path, value):
    """A copy of ``spec`` with the item at ``path`` (keys and indexes) set, or removed if None."""
    changed = copy.deepcopy(spec)
    *parents, last = path
    target = changed
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return changed


def encoder_of(spec, kind):
    """The spec's first encoder of ``kind`` ("one_hot" or "standardize").

    Skips the test when the schema has no feature of that kind (a team's edit of
    ``data.SCHEMA`` may leave no categorical or no numeric feature).
    """
    found = next((item for item in spec["encoders"] if item["kind"] == kind), None)
    if found is None:
        pytest.skip(f"data.SCHEMA has no feature the spec encodes with {kind!r}")
    return found


def unknown_name(names):
    """A name that is none of ``names``: longer than each of them."""
    return "-".join(["unknown", *names])


def set_item(key, value):
    """An edit that sets the spec's top-level ``key`` to ``value(spec)``."""
    def edit(spec):
        spec[key] = value(spec)
    return edit


def drop_a_category_column(spec):
    """Remove one category's column: the encoders then leave a column unfilled."""
    columns = encoder_of(spec, "one_hot")["columns"]
    del columns[next(iter(columns))]


def an_encoder_replaced_by_its_feature_name(spec):
    spec["encoders"][0] = spec["encoders"][0]["feature"]


def name_an_unknown_feature(spec):
    spec["encoders"][0]["feature"] = unknown_name(data.FEATURES)


def columns_as_strings(spec):
    encoder = encoder_of(spec, "one_hot")
    encoder["columns"] = {category: str(column)
                          for category, column in encoder["columns"].items()}


def column_as_a_float(spec):
    encoder = encoder_of(spec, "standardize")
    encoder["column"] = float(encoder["column"])


def fill_the_columns(spec):
    """The message of encoders that do not fill the (edited) spec's columns exactly once."""
    return f"fill the {spec['width']} columns exactly once"


@pytest.mark.parametrize("edit, words", [
    (set_item("format", lambda spec: spec["format"] + 1), "format"),
    (set_item("features", lambda spec: spec["features"][:-1]), "features must be"),
    (set_item("classes", lambda spec: spec["classes"][::-1]), "classes must be"),
    (set_item("width", lambda spec: True), "width must be a positive integer"),
    (set_item("width", lambda spec: spec["width"] + 1), fill_the_columns),
    (an_encoder_replaced_by_its_feature_name, "an encoder must name a feature"),
    (name_an_unknown_feature, "an encoder must name a feature"),
    (lambda spec: spec["encoders"][0].update(kind="ordinal"), "unsupported encoder kind"),
    (columns_as_strings, "columns must map"),
    (drop_a_category_column, fill_the_columns),
    (column_as_a_float, "column must be an integer"),
    (lambda spec: encoder_of(spec, "standardize").update(mean=float("nan")),
     "mean must be a finite number"),
    (lambda spec: encoder_of(spec, "standardize").update(scale=0.0), "scale must not be zero"),
    (lambda spec: spec.pop("classifier"), "no classifier"),
    (lambda spec: spec["classifier"].update(kind="svm"), "unsupported classifier"),
    (lambda spec: spec["classifier"].update(coef=spec["classifier"]["coef"][:-1]),
     lambda spec: f"coef must be a list of {spec['width']} numbers"),
    (lambda spec: spec["classifier"].update(intercept="1"), "intercept must be a finite number"),
], ids=[
    "format", "features", "classes", "width-not-an-integer", "width-too-large",
    "encoder-not-a-dict", "encoder-of-an-unknown-feature", "encoder-kind", "columns-as-strings",
    "a-category-column-missing", "column-not-an-integer", "mean-not-finite", "scale-zero",
    "no-classifier", "classifier-kind", "coef-too-short", "intercept-a-string",
])
def test_a_malformed_spec_is_refused_naming_the_problem(valid_spec, edit, words):
    spec = copy.deepcopy(valid_spec)
    edit(spec)
    assert json.dumps(spec) != json.dumps(valid_spec), "the edit must change the spec"
    expected = words(spec) if callable(words) else words  # built from the edited spec
    with pytest.raises(scoring.SpecError, match=re.escape(expected)):
        scoring.NumpyScorer(spec)


@pytest.mark.parametrize("path, value, words", [
    (("encoders",), 5, "encoders must be a list"),
    (("classifier", "intercept"), 10 ** 400, "intercept must be a finite number"),
    (("width",), 10 ** 14, "columns exactly once"),
])
def test_a_crafted_spec_is_refused_rather_than_crashing(valid_spec, path, value, words):
    with pytest.raises(scoring.SpecError, match=words):
        scoring.NumpyScorer(change(valid_spec, path, value))


def tiny_scales(spec):
    """``spec`` with every numeric feature's scale near zero, centred on the example record:
    the example still scores, any other value overflows to an undefined probability."""
    changed = copy.deepcopy(spec)
    for encoder in changed["encoders"]:
        if encoder["kind"] == "standardize":
            encoder.update(mean=float(EXAMPLE[encoder["feature"]]), scale=1e-308)
    return changed


def test_a_spec_without_a_finite_score_for_every_valid_record_is_refused(valid_spec):
    with pytest.raises(scoring.SpecError, match="no finite score"):
        scoring.NumpyScorer(tiny_scales(valid_spec))


@pytest.mark.parametrize("payload", [
    "[" * 100_000,  # nested too deeply for the JSON parser
    '{"format": 1, "encoders": 5}',
], ids=["deep-nesting", "encoders-not-a-list"])
def test_a_crafted_spec_with_a_matching_checksum_leaves_the_service_not_ready(
        served_settings, payload):
    rewrite_spec_file(served_settings, payload.encode())
    with TestClient(service.create_app(served_settings)) as client:
        ready = client.get("/ready")
        predicted = client.post("/predict", json=EXAMPLE)
    assert ready.status_code == 503
    assert registry.SCORER_FILE in ready.json()["reason"]
    assert predicted.status_code == 503


def test_a_spec_that_encodes_a_feature_twice_is_refused(valid_spec):
    if len(valid_spec["encoders"]) < 2:
        pytest.skip("data.SCHEMA has a single feature")
    spec = copy.deepcopy(valid_spec)
    # The second encoder keeps its columns (so they are all filled) but names the first's feature.
    spec["encoders"][1]["feature"] = spec["encoders"][0]["feature"]
    with pytest.raises(scoring.SpecError, match="encoded twice"):
        scoring.NumpyScorer(spec)


def test_a_spec_missing_a_category_of_the_schema_is_refused(valid_spec):
    spec = copy.deepcopy(valid_spec)
    encoder = encoder_of(spec, "one_hot")
    # One category's column is given to a name the schema does not know: every column is
    # still filled, but that category of the schema has no column left.
    columns = encoder["columns"]
    missing = next(iter(columns))
    encoder["columns"] = {(unknown_name(columns) if category == missing else category): column
                          for category, column in columns.items()}
    with pytest.raises(scoring.SpecError, match="every category needs a one-hot column"):
        scoring.NumpyScorer(spec)


def test_a_spec_that_one_hot_encodes_a_number_is_refused(valid_spec):
    spec = copy.deepcopy(valid_spec)
    numeric = encoder_of(spec, "standardize")
    feature = numeric["feature"]
    one_hot = {"kind": "one_hot", "feature": feature,
               "columns": {str(EXAMPLE[feature]): numeric["column"]}}
    spec["encoders"][spec["encoders"].index(numeric)] = one_hot
    with pytest.raises(scoring.SpecError, match="needs standardizing"):
        scoring.NumpyScorer(spec)
