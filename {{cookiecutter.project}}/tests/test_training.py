"""The model: training stores a verified artifact, the model predicts, each row is logged."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, StandardScaler

from {{ cookiecutter.package }} import (
    cli, data, device, loading, logs, pipeline_scoring, registry, scoring, training,
)
from {{ cookiecutter.package }}.config import Settings
from {{ cookiecutter.package }}.data import DataValidationError

EXAMPLE = data.SCHEMA.example


def snapshot(paths):
    """Every file under the given paths with its size and modification time."""
    return {
        str(path): sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns)
                          for f in path.rglob("*") if f.is_file()) if path.exists() else None
        for path in paths
    }


def test_training_stores_the_version_with_its_metadata(loaded):
    metadata = loaded.metadata
    assert (metadata["name"], metadata["version"]) == ("test-model", "0.1")
    assert metadata["note"] == Settings().version_note
    assert metadata["data"]["n_rows"] == 300
    assert len(metadata["data"]["fingerprint"]) == 64
    assert {"trained_at", "artifact_sha256", "libraries", "metrics"} <= set(metadata)


def test_training_compares_candidates_against_a_baseline(loaded):
    metrics = loaded.metadata["metrics"]
    assert set(metrics["cross_validation"]) == set(training.candidate_models()) | {"baseline"}
    assert metrics["selected_model"] in training.candidate_models()
    assert metrics["baseline_test"]["roc_auc"] == 0.5


def test_trained_model_beats_the_baseline(loaded):
    metrics = loaded.metadata["metrics"]
    assert metrics["test"]["roc_auc"] > metrics["baseline_test"]["roc_auc"] + 0.1


def test_metrics_record_the_class_balance_of_both_splits(loaded):
    balance = loaded.metadata["metrics"]["class_balance"]
    assert set(balance) == {"train", "test"}
    assert sum(balance["test"].values()) == pytest.approx(1.0)


def test_selection_prefers_the_simpler_model_within_one_standard_error():
    scores = {
        "simple": {"roc_auc_mean": 0.80, "roc_auc_std": 0.01},
        "complex": {"roc_auc_mean": 0.81, "roc_auc_std": 0.05},
        "baseline": {"roc_auc_mean": 0.5, "roc_auc_std": 0.0},
    }
    assert training.select_model(scores) == "simple"
    scores["complex"]["roc_auc_mean"] = 0.90
    assert training.select_model(scores) == "complex"


def test_training_is_logged_in_the_test_train_log(trained_settings, small_dataset,
                                                  quick_training):
    training.train(trained_settings, small_dataset, test_mode=True)
    (record,) = logs.read_log(trained_settings.log_dir, "train", test_mode=True)
    assert record["model_version"] == "0.1"
    assert record["input_data_summary"]["n_rows"] == 300
    assert record["data_fingerprint"] == data.fingerprint(small_dataset)
    assert record["runtime"] > 0
    assert logs.read_log(trained_settings.log_dir, "train") == []


def test_training_reads_the_configured_csv(tmp_path, small_dataset, quick_training):
    path = tmp_path / "team-data.csv"
    path.write_bytes(data.canonical_csv(small_dataset))
    settings = Settings(data_path=path, version="2.0")
    result = training.train(settings, test_mode=True)
    assert result.metadata["data"]["source"] == str(path)
    assert result.version == "2.0"
    assert training.load_training_data(settings, test_mode=True).equals(
        training.training_split(small_dataset))


def test_training_defaults_to_the_embedded_data_set(settings, monkeypatch, quick_training):
    small = data.make_default_dataset(200)
    monkeypatch.setattr(data, "make_default_dataset", lambda: small)
    result = training.train(settings, test_mode=True)
    assert result.metadata["data"]["source"] == "embedded default data set"
    assert result.metrics["n_train"] + result.metrics["n_test"] == 200


def test_training_refuses_data_with_too_few_rows_of_a_class(settings, small_dataset):
    skewed = small_dataset.assign(**{data.TARGET: 1})
    skewed.loc[:3, data.TARGET] = 0
    with pytest.raises(DataValidationError, match="at least 10 rows of each class"):
        training.train(settings, skewed, test_mode=True)


def test_a_failed_training_leaves_the_previous_version_loadable(
        trained_settings, small_dataset, monkeypatch, quick_training):
    before = loading.load_pipeline(trained_settings, test_mode=True).metadata["trained_at"]

    def crash(*args, **kwargs):
        raise RuntimeError("out of disk space")

    monkeypatch.setattr(registry, "_write_file", crash)
    with pytest.raises(RuntimeError):
        training.train(trained_settings, small_dataset, test_mode=True)
    monkeypatch.undo()
    assert loading.load_pipeline(trained_settings, test_mode=True).metadata["trained_at"] == before


def test_loading_an_untrained_version_raises_model_not_found(settings):
    with pytest.raises(registry.ModelNotFoundError):
        loading.load_pipeline(settings, test_mode=True)


def test_loading_a_tampered_model_raises_integrity_error(trained_settings, loaded):
    with open(loaded.path / registry.MODEL_FILE, "r+b") as stream:
        stream.seek(100)
        stream.write(b"tampered")
    with pytest.raises(registry.IntegrityError, match="refusing to load it"):
        loading.load_pipeline(trained_settings, test_mode=True)


def test_predicts_one_record(loaded, settings):
    prediction = scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True)
    assert prediction.labels in ([0], [1])
    assert 0.0 <= prediction.probabilities[0] <= 1.0
    assert prediction.model_version == "0.1"


def test_predicts_a_list_of_records(loaded, settings):
    prediction = scoring.predict(loaded, [EXAMPLE] * 3, settings=settings, test_mode=True)
    assert len(prediction.labels) == len(prediction.probabilities) == 3


def test_predicts_an_array_of_rows(loaded, settings):
    row = [EXAMPLE[name] for name in data.FEATURES]
    prediction = scoring.predict(loaded, np.array([row, row], dtype=object), settings=settings,
                                 test_mode=True)
    assert prediction.probabilities[0] == prediction.probabilities[1]


def test_predicts_a_data_frame(loaded, settings, small_dataset):
    frame = small_dataset[data.FEATURES]
    prediction = scoring.predict(loaded, frame, settings=settings, test_mode=True)
    expected = loaded.pipeline.predict(frame)
    assert prediction.labels == expected.tolist()


def test_labels_follow_the_probabilities(loaded, settings, small_dataset):
    prediction = scoring.predict(loaded, small_dataset[data.FEATURES], settings=settings,
                                 test_mode=True)
    assert all(label == (p > 0.5) for label, p in zip(prediction.labels, prediction.probabilities))


def test_fast_scoring_matches_the_pipeline(loaded, small_dataset):
    assert loaded.scorer is not None
    rows = small_dataset[data.FEATURES].to_dict("records")
    np.testing.assert_allclose(loaded.positive_probability(rows),
                               loaded.pipeline.predict_proba(small_dataset[data.FEATURES])[:, 1],
                               rtol=0, atol=1e-12)


def test_a_forest_is_scored_through_its_own_predict_proba(small_dataset):
    forest = training.build_pipeline(RandomForestClassifier(n_estimators=5, random_state=0))
    forest.fit(small_dataset[data.FEATURES], small_dataset[data.TARGET])
    loaded = pipeline_scoring.PipelineModel(forest, {}, "model", "0.1", path=None)
    assert loaded.scorer is not None
    np.testing.assert_allclose(loaded.positive_probability([EXAMPLE]),
                               forest.predict_proba(pd.DataFrame([EXAMPLE]))[:, 1])


def test_an_unsupported_pipeline_falls_back_to_scikit_learn(loaded, small_dataset):
    pipeline = Pipeline([("identity", FunctionTransformer()), *loaded.pipeline.steps])
    fallback = pipeline_scoring.PipelineModel(pipeline, {}, "model", "0.1", path=None)
    assert fallback.scorer is None
    frame = small_dataset[data.FEATURES]
    np.testing.assert_allclose(fallback.positive_probability(frame),
                               loaded.positive_probability(frame))
    np.testing.assert_allclose(fallback.positive_probability([EXAMPLE]),
                               loaded.positive_probability([EXAMPLE]))


def fit_with_numeric_step(step, frame):
    pipeline = Pipeline([
        ("preprocess", ColumnTransformer([
            ("categorical", OneHotEncoder(sparse_output=False), ["country", "subscriber_type"]),
            ("numeric", step, ["age", "num_streams"]),
        ])),
        ("classifier", LogisticRegression()),
    ])
    return pipeline.fit(frame[data.FEATURES], frame[data.TARGET])


def test_fast_scoring_honours_a_scaler_without_centering(small_dataset):
    pipeline = fit_with_numeric_step(StandardScaler(with_mean=False), small_dataset)
    loaded = pipeline_scoring.PipelineModel(pipeline, {}, "model", "0.1", path=None)
    assert loaded.scorer is not None
    frame = small_dataset[data.FEATURES]
    np.testing.assert_allclose(loaded.positive_probability(frame),
                               pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)


def test_an_unknown_transformer_falls_back_to_scikit_learn(small_dataset):
    pipeline = fit_with_numeric_step(MinMaxScaler(), small_dataset)
    loaded = pipeline_scoring.PipelineModel(pipeline, {}, "model", "0.1", path=None)
    assert loaded.scorer is None
    np.testing.assert_allclose(loaded.positive_probability([EXAMPLE]),
                               pipeline.predict_proba(pd.DataFrame([EXAMPLE]))[:, 1])


def test_a_disagreeing_fast_scorer_is_not_used(loaded, monkeypatch, caplog):
    monkeypatch.setattr(scoring.NumpyScorer, "positive_probability",
                        lambda self, columns: np.zeros(len(next(iter(columns.values())))))
    reloaded = pipeline_scoring.PipelineModel(loaded.pipeline, loaded.metadata, "test-model",
                                              "0.1", loaded.path)
    assert reloaded.scorer is None
    assert "disagrees" in caplog.text


def test_a_fast_scorer_whose_spec_is_refused_is_not_used(loaded, monkeypatch, caplog):
    scoring_spec = pipeline_scoring.scoring_spec
    monkeypatch.setattr(pipeline_scoring, "scoring_spec",
                        lambda pipeline: {**scoring_spec(pipeline), "width": 0})
    with caplog.at_level(logging.INFO, logger=pipeline_scoring.__name__):
        reloaded = pipeline_scoring.PipelineModel(loaded.pipeline, loaded.metadata, "test-model",
                                                  "0.1", loaded.path)
    assert reloaded.scorer is None
    assert "fast scoring unavailable (width must be a positive integer" in caplog.text
    np.testing.assert_allclose(reloaded.positive_probability([EXAMPLE]),
                               loaded.pipeline.predict_proba(pd.DataFrame([EXAMPLE]))[:, 1])


def test_self_check_passes_for_a_loaded_model(loaded):
    assert loaded.self_check()


def test_self_check_fails_when_prediction_fails(loaded, monkeypatch):
    monkeypatch.setattr(loaded, "scorer", None)
    monkeypatch.setattr(loaded, "pipeline", None)
    assert not loaded.self_check()


def test_nan_input_is_refused_with_a_clear_error(loaded, settings):
    with pytest.raises(DataValidationError, match="field 'age': value is missing"):
        scoring.predict(loaded, {**EXAMPLE, "age": float("nan")}, settings=settings,
                        test_mode=True)


def test_nan_in_a_data_frame_is_refused(loaded, settings):
    frame = pd.DataFrame([EXAMPLE, {**EXAMPLE, "num_streams": np.nan}])
    with pytest.raises(DataValidationError, match="row 1, field 'num_streams'"):
        scoring.predict(loaded, frame, settings=settings, test_mode=True)


def test_invalid_input_writes_no_log_line(loaded, settings):
    with pytest.raises(DataValidationError):
        scoring.predict(loaded, {**EXAMPLE, "country": "mars"}, settings=settings, test_mode=True)
    assert logs.read_log(settings.log_dir, "predict", test_mode=True) == []


def test_n_predictions_give_n_log_lines(loaded, settings):
    for _ in range(5):
        scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True)
    scoring.predict(loaded, [EXAMPLE] * 3, settings=settings, test_mode=True)
    assert len(logs.read_log(settings.log_dir, "predict", test_mode=True)) == 8


def test_predict_log_holds_the_course_fields(loaded, settings):
    prediction = scoring.predict(loaded, EXAMPLE, settings=settings, request_id="req-1",
                                 test_mode=True)
    (record,) = logs.read_log(settings.log_dir, "predict", test_mode=True)
    assert record["request_id"] == prediction.request_id == "req-1"
    assert record["prediction"] == prediction.labels[0]
    assert record["probability"] == prediction.probabilities[0]
    assert record["model_version"] == "0.1"
    assert record["input"] == EXAMPLE
    assert record["input_data_summary"] == {"n_rows": 1, "n_features": 4}
    assert record["runtime"] >= 0 and "timestamp" in record


def test_request_ids_are_generated_and_unique(loaded, settings):
    first = scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True)
    second = scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True)
    assert first.request_id != second.request_id


def test_inputs_stay_out_of_the_log_when_switched_off(loaded, monkeypatch):
    monkeypatch.setenv("MODEL_LOG_INPUTS", "false")
    settings = Settings()
    scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True)
    (record,) = logs.read_log(settings.log_dir, "predict", test_mode=True)
    assert "input" not in record


def test_prediction_serialises_to_a_dict(loaded, settings):
    result = scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True).to_dict()
    assert set(result) == {"request_id", "model_version", "predictions", "probabilities"}


def test_test_mode_never_touches_production_paths(production_paths, settings, small_dataset,
                                                  quick_training):
    before = snapshot(production_paths)
    training.train(settings, small_dataset, test_mode=True)
    loaded = loading.load_pipeline(settings, test_mode=True)
    scoring.predict(loaded, EXAMPLE, settings=settings, test_mode=True)
    assert snapshot(production_paths) == before
    assert [p.name for p in settings.registry_dir.iterdir() if p.is_symlink()] == ["test-model-0.1"]
    assert sorted(p.name.rsplit("-", 2)[0] for p in settings.log_dir.iterdir()) == [
        "predict-test", "train-test"]


# ---- Fitting on an accelerator -------------------------------------------------------------
# array-api-strict is an array namespace on the CPU that is not numpy: scikit-learn fits
# through the same array API dispatch as with CuPy on a GPU, so these tests run that code path
# on any machine. The stored artifact must be the plain numpy pipeline either way.


def strict_accelerator(to_numpy=np.from_dlpack, to_device=None):
    """An accelerator on array-api-strict's CPU device, with replaceable transfers."""
    import array_api_strict

    return device.Accelerator(
        library="array-api-strict", version=array_api_strict.__version__,
        device="array-api-strict CPU device", namespace=array_api_strict,
        to_device=to_device or array_api_strict.asarray, to_numpy=to_numpy)


@pytest.fixture
def array_api_enabled(monkeypatch):
    """scikit-learn refuses array API dispatch unless SCIPY_ARRAY_API=1 (the GPU image's)."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


@pytest.fixture
def no_gpu_library(monkeypatch):
    """A machine without a driver and without CuPy, whatever this one has."""
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "cupy", None)


def test_an_accelerated_fit_computes_the_classifier_in_the_accelerators_arrays(
        small_dataset, array_api_enabled):
    came_back = []

    def to_numpy(array):
        came_back.append(type(array).__module__.split(".")[0])
        return np.from_dlpack(array)

    compute = device.Compute(strict_accelerator(to_numpy=to_numpy))
    X, y = small_dataset[data.FEATURES], small_dataset[data.TARGET]
    pipeline = training.fit_pipeline(training.build_pipeline(LogisticRegression()), X, y, compute)
    # coef_, intercept_ and n_iter_ were fitted as array-api-strict arrays, then brought back.
    assert came_back == ["array_api_strict"] * 3
    fitted = {k: v for k, v in vars(pipeline[-1]).items() if k.endswith("_")}
    assert all(isinstance(v, (np.ndarray, int)) for v in fitted.values()), fitted
    assert compute.accelerator is not None and compute.fallback_reason == ""


def test_an_accelerated_fit_gives_the_probabilities_of_a_cpu_fit(
        small_dataset, array_api_enabled):
    X, y = small_dataset[data.FEATURES], small_dataset[data.TARGET]
    accelerated = training.fit_pipeline(training.build_pipeline(LogisticRegression()), X, y,
                                        device.Compute(strict_accelerator()))
    on_cpu = training.build_pipeline(LogisticRegression()).fit(X, y)
    np.testing.assert_allclose(accelerated.predict_proba(X), on_cpu.predict_proba(X),
                               rtol=0, atol=1e-9)


def test_only_classifiers_with_array_api_support_run_on_the_accelerator():
    compute = device.Compute(strict_accelerator())
    assert training.runs_on_device(LogisticRegression(), compute)
    assert not training.runs_on_device(LogisticRegression(solver="liblinear"), compute)
    assert not training.runs_on_device(RandomForestClassifier(), compute)
    assert not training.runs_on_device(DummyClassifier(), compute)
    assert not training.runs_on_device(LogisticRegression(), device.Compute(None, "no GPU"))


def test_a_model_fitted_on_an_accelerator_is_the_plain_artifact_the_service_loads(
        settings, small_dataset, quick_training, array_api_enabled):
    training.train(settings, small_dataset, test_mode=True,
                   compute=device.Compute(strict_accelerator()))
    loaded = loading.load_pipeline(settings, test_mode=True)
    classifier = loaded.pipeline[-1]
    assert isinstance(classifier.coef_, np.ndarray)
    assert isinstance(classifier.intercept_, np.ndarray)
    served = loading.load_model(settings, test_mode=True)
    assert served.scorer is not None  # the numpy scoring spec was verified and stored
    assert pipeline_scoring.agrees_with(served.scorer, loaded.pipeline)


def test_training_records_the_accelerator_and_the_parity_check(
        settings, small_dataset, quick_training, array_api_enabled):
    result = training.train(settings, small_dataset, test_mode=True,
                            compute=device.Compute(strict_accelerator()))
    compute = result.metadata["compute"]
    assert {k: compute[k] for k in ("device", "library", "dispatch", "fallback_reason")} == {
        "device": "array-api-strict CPU device", "library": "array-api-strict",
        "dispatch": "scikit-learn array API dispatch", "fallback_reason": None}
    parity = compute["parity"]
    assert parity["reference"] == "cpu" and parity["n_rows"] == result.metrics["n_test"]
    assert 0 <= parity["max_abs_probability_difference"] <= parity["tolerance"]
    (record,) = logs.read_log(settings.log_dir, "train", test_mode=True)
    assert record["compute"] == compute


def test_training_without_a_gpu_records_the_cpu_and_why(
        settings, small_dataset, quick_training, no_gpu_library):
    result = training.train(settings, small_dataset, test_mode=True)
    compute = result.metadata["compute"]
    assert (compute["device"], compute["library"], compute["parity"]) == ("cpu", None, None)
    assert compute["fallback_reason"].endswith("CuPy is not installed (the GPU image has it)")
    (record,) = logs.read_log(settings.log_dir, "train", test_mode=True)
    assert record["compute"] == compute


def test_a_disagreeing_accelerator_fails_training_and_keeps_the_previous_model(
        trained_settings, small_dataset, quick_training, array_api_enabled, monkeypatch,
        capsys):
    before = loading.load_pipeline(trained_settings, test_mode=True).metadata["trained_at"]
    skewed = strict_accelerator(to_numpy=lambda array: np.add(np.from_dlpack(array), 0.5))
    monkeypatch.setattr(device, "detect", lambda: device.Compute(skewed))
    csv = trained_settings.registry_dir.parent / "train.csv"
    csv.write_bytes(data.canonical_csv(small_dataset))
    assert cli.main(["train", "--data", str(csv), "--test-mode"]) == 1
    err = capsys.readouterr().err
    assert "the fit on array-api-strict CPU device disagrees with the same fit on the CPU" in err
    assert "no model was stored" in err
    assert loading.load_pipeline(trained_settings, test_mode=True).metadata["trained_at"] == before


def test_a_device_failing_mid_training_falls_back_to_the_cpu_and_says_why(
        settings, small_dataset, quick_training, array_api_enabled, caplog):
    def out_of_memory(array):
        raise MemoryError("out of memory allocating 2400 bytes")

    with caplog.at_level(logging.WARNING):
        result = training.train(settings, small_dataset, test_mode=True,
                                compute=device.Compute(strict_accelerator(to_device=out_of_memory)))
    compute = result.metadata["compute"]
    assert (compute["device"], compute["parity"]) == ("cpu", None)
    assert compute["fallback_reason"] == (
        "the fit on array-api-strict CPU device failed: MemoryError: out of memory "
        "allocating 2400 bytes")
    assert "fitting on the CPU from now on" in caplog.text
    assert result.metrics["test"]["roc_auc"] > 0.5


# As in the GPU image: SCIPY_ARRAY_API=1 before SciPy is first imported (the tests above set it
# after), in a fresh interpreter that trains through the dispatch.
TRAIN_WITH_DISPATCH = """
import json, sys
import numpy as np
import array_api_strict
from {{ cookiecutter.package }} import data, device, training
from {{ cookiecutter.package }}.config import Settings
accelerator = device.Accelerator(
    library="array-api-strict", version=array_api_strict.__version__, device="strict",
    namespace=array_api_strict, to_device=array_api_strict.asarray, to_numpy=np.from_dlpack)
result = training.train(Settings(registry_dir=sys.argv[1], log_dir=sys.argv[2]),
                     data.make_default_dataset(n_rows=400, seed=3), test_mode=True,
                     compute=device.Compute(accelerator))
print(json.dumps(result.metadata["compute"]))
"""


def test_training_dispatches_with_scipy_array_api_set_from_the_start(tmp_path):
    environment = {**os.environ, "SCIPY_ARRAY_API": "1"}
    output = subprocess.run(
        [sys.executable, "-c", TRAIN_WITH_DISPATCH, str(tmp_path / "models"),
         str(tmp_path / "logs")],
        capture_output=True, text=True, env=environment, timeout=600)
    assert output.returncode == 0, output.stderr
    compute = json.loads(output.stdout.strip().splitlines()[-1])
    assert (compute["device"], compute["fallback_reason"]) == ("strict", None)
    # The full candidate set: the forest fits on the CPU, so a parity check happens only
    # when the logistic regression, fitted through the dispatch, is the one selected.
    if compute["parity"] is not None:
        assert compute["parity"]["max_abs_probability_difference"] <= training.PARITY_TOLERANCE
