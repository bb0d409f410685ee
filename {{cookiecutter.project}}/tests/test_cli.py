"""The command line: train, predict, serve, monitor; user errors are one line, no traceback."""

import importlib
import io
import json
import sys
import types

import pytest

from {{ cookiecutter.package }} import cli, data, loading, logs, registry, training

EXAMPLE = data.SCHEMA.example


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def training_csv(tmp_path, small_dataset):
    path = tmp_path / "train.csv"
    path.write_bytes(data.canonical_csv(small_dataset))
    return path


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert raised.value.code == 0
    assert all(command in out for command in ("train", "predict", "serve", "monitor"))


@pytest.mark.parametrize("command", ["train", "predict", "serve", "monitor"])
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as raised:
        cli.main([command, "--help"])
    assert raised.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main([])
    assert raised.value.code == 2


def test_train_prints_a_summary_with_the_version(capsys, training_csv, quick_training):
    status, out, err = run(capsys, "train", "--data", str(training_csv), "--version", "1.2",
                           "--note", "from the CLI", "--test-mode")
    summary = json.loads(out)
    assert status == 0
    assert summary["model_version"] == "1.2"
    assert summary["name"] == "test-model"
    assert "cross-validating" in err


def test_retraining_an_existing_version_says_it_replaces_it(
    capsys, training_csv, quick_training
):
    args = ("train", "--data", str(training_csv), "--version", "1.2", "--test-mode", "-q")
    first_status, _, first_err = run(capsys, *args)
    trained_at = registry.Registry(cli.Settings().registry_dir).metadata(
        "test-model", "1.2")["trained_at"]
    status, _, err = run(capsys, *args)
    assert (first_status, status) == (0, 0)
    assert "replacing" not in first_err
    assert f"replacing test-model version 1.2 (trained {trained_at})" in err
    assert "test-model-1.2 will point to the new model" in err


def test_train_quiet_prints_no_progress(capsys, training_csv, quick_training):
    status, _, err = run(capsys, "train", "--data", str(training_csv), "--test-mode", "-q")
    assert status == 0 and err == ""


def test_predict_reads_json_from_stdin(capsys, monkeypatch, trained_settings):
    status, out, _ = run(capsys, "predict", "--test-mode", stdin=json.dumps(EXAMPLE),
                         monkeypatch=monkeypatch)
    result = json.loads(out)
    assert status == 0
    assert result["model_version"] == "0.1"
    assert result["predictions"][0] in (0, 1)


def test_predict_reads_a_json_list_file(capsys, tmp_path, trained_settings):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([EXAMPLE, EXAMPLE]))
    status, out, _ = run(capsys, "predict", str(path), "--test-mode")
    assert status == 0 and len(json.loads(out)["probabilities"]) == 2


def test_predict_reads_csv(capsys, tmp_path, trained_settings):
    path = tmp_path / "records.csv"
    path.write_text("country,age,subscriber_type,num_streams\nsingapore,30,aavail_basic,5\n"
                    "united_states,50,aavail_premium,40\n")
    status, out, _ = run(capsys, "predict", str(path), "--test-mode")
    assert status == 0 and len(json.loads(out)["predictions"]) == 2


def test_predict_sniffs_csv_on_stdin(capsys, monkeypatch, trained_settings):
    status, out, _ = run(capsys, "predict", "--test-mode", monkeypatch=monkeypatch,
                         stdin="country,age,subscriber_type,num_streams\n"
                               "singapore,30,aavail_basic,5\n")
    assert status == 0 and len(json.loads(out)["predictions"]) == 1


def test_predict_writes_the_test_log(capsys, monkeypatch, trained_settings):
    run(capsys, "predict", "--test-mode", stdin=json.dumps(EXAMPLE), monkeypatch=monkeypatch)
    assert len(logs.read_log(trained_settings.log_dir, "predict", test_mode=True)) == 1
    assert logs.read_log(trained_settings.log_dir, "predict") == []


def refuse_to_load_the_pipeline(*args, **kwargs):
    raise AssertionError("the pipeline was loaded although the registry holds a scoring spec")


def test_predict_scores_with_the_stored_spec_as_the_service_does(capsys, monkeypatch,
                                                                 trained_settings):
    monkeypatch.setattr(loading, "load_pipeline", refuse_to_load_the_pipeline)
    status, out, _ = run(capsys, "predict", "--test-mode", stdin=json.dumps(EXAMPLE),
                         monkeypatch=monkeypatch)
    served = loading.load_model(trained_settings, test_mode=True)
    assert served.pipeline is None
    assert status == 0
    assert json.loads(out)["probabilities"] == served.positive_probability([EXAMPLE]).tolist()


def test_predict_without_a_stored_spec_scores_with_the_pipeline(capsys, monkeypatch,
                                                                trained_settings):
    folder = registry.Registry(trained_settings.registry_dir).resolve(
        registry.artifact_name(True), trained_settings.version)
    metadata = json.loads((folder / registry.METADATA_FILE).read_text())
    del metadata["scorer_sha256"]
    (folder / registry.METADATA_FILE).write_text(json.dumps(metadata))
    registry.write_checksums(folder)
    (folder / registry.SCORER_FILE).unlink()
    status, out, _ = run(capsys, "predict", "--test-mode", stdin=json.dumps(EXAMPLE),
                         monkeypatch=monkeypatch)
    pipeline = loading.load_pipeline(trained_settings, test_mode=True).pipeline
    expected = pipeline.predict_proba(data.rows_to_frame([EXAMPLE]))[:, 1]
    assert status == 0
    assert json.loads(out)["probabilities"] == pytest.approx(expected.tolist(), abs=1e-9)


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (json.dumps({**EXAMPLE, "age": "12"}), "field 'age': expected an integer"),
        (json.dumps({**EXAMPLE, "age": None}), "field 'age': value is missing"),
        ('{"country": "singapore",', "<stdin>: not valid JSON"),
        ("country,age\nsingapore,30\n", "<stdin>: missing column 'subscriber_type'"),
        ("", "<stdin>: the file is empty"),
    ],
    ids=["wrong-type", "null", "broken-json", "csv-missing-column", "empty"],
)
def test_bad_input_is_one_line_and_status_2(capsys, monkeypatch, trained_settings, stdin,
                                            expected):
    status, out, err = run(capsys, "predict", "--test-mode", stdin=stdin, monkeypatch=monkeypatch)
    assert status == 2
    assert out == ""
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_unreadable_input_file_is_status_2(capsys, tmp_path):
    status, _, err = run(capsys, "predict", str(tmp_path / "missing.json"))
    assert status == 2 and "cannot read" in err


def test_predict_without_a_trained_model_is_status_1(capsys, monkeypatch):
    status, _, err = run(capsys, "predict", stdin=json.dumps(EXAMPLE), monkeypatch=monkeypatch)
    assert status == 1
    assert "train it first" in err and err.count("\n") == 1


def test_an_invalid_setting_is_status_2(capsys, monkeypatch):
    monkeypatch.setenv("MODEL_VERSION", "latest")
    status, _, err = run(capsys, "predict", stdin="{}", monkeypatch=monkeypatch)
    assert status == 2
    assert "invalid setting MODEL_VERSION='latest'" in err


def test_a_missing_training_file_is_status_2(capsys, tmp_path):
    status, _, err = run(capsys, "train", "--data", str(tmp_path / "nope.csv"))
    assert status == 2 and "is not a file" in err


def test_an_os_error_is_one_line_and_status_1(capsys, monkeypatch, training_csv):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "models")

    monkeypatch.setattr(training, "train", full)
    status, _, err = run(capsys, "train", "--data", str(training_csv))
    assert status == 1 and "models: No space left on device" in err


def test_ctrl_c_is_status_130(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    assert run(capsys, "train")[0] == 130


def fake_module(monkeypatch, name, **functions):
    module = types.ModuleType(f"{cli.__package__}.{name}")
    module.__dict__.update(functions)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    # The package attribute wins over sys.modules once the real module has been imported.
    package, _, attribute = module.__name__.rpartition(".")
    monkeypatch.setattr(importlib.import_module(package), attribute, module, raising=False)
    return module


def test_serve_runs_the_service_with_the_options(capsys, monkeypatch):
    seen: dict = {}
    fake_module(monkeypatch, "serving.service", run=lambda settings: seen.update(
        host=settings.host, port=settings.port, workers=settings.workers))
    status, _, _ = run(capsys, "serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "2")
    assert status == 0
    assert seen == {"host": "0.0.0.0", "port": 9000, "workers": 2}


def test_monitor_returns_the_monitor_status(capsys, monkeypatch):
    seen = {}

    def run_monitor(settings, **options):
        seen.update(options)
        return 3

    fake_module(monkeypatch, "monitoring", run_monitor=run_monitor)
    assert run(capsys, "monitor", "--test-mode")[0] == 3
    assert seen["test_mode"] is True


def test_train_is_refused_while_another_training_run_holds_the_registry(settings, capsys):
    with registry.Registry(settings.registry_dir).training_lock():
        status = cli.main(["train"])
    assert status == 1
    assert "a training run is already going on" in capsys.readouterr().err
