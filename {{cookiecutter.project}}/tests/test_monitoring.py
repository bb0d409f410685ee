"""Drift monitoring: in-distribution traffic passes, shifted traffic and outliers fail."""

import json
import sys

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from {{ cookiecutter.package }} import cli, data, logs, model, monitoring, scoring
from {{ cookiecutter.package }}.config import Settings


def log_traffic(settings: Settings, frame) -> None:
    """Predict ``frame`` with the served model, as production traffic would."""
    loaded = scoring.load_served_model(settings)
    scoring.predict(loaded, frame[data.FEATURES], settings=settings)


@pytest.fixture
def traffic():
    """Rows drawn from the training data's distribution (another sample of it)."""
    return data.make_default_dataset(n_rows=300, seed=11)[data.FEATURES]


def test_in_distribution_traffic_passes(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic)
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_PASSED
    out = capsys.readouterr().out
    assert "OUTLIER TEST PASSED" in out
    assert "X WASSERSTEIN TEST PASSED" in out
    assert "RESULT: PASSED" in out


def test_the_monitor_scores_with_the_stored_spec_as_the_service_does(
        served_settings, traffic, monkeypatch, capsys):
    log_traffic(served_settings, traffic)

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded although the registry holds a spec")

    monkeypatch.setattr(model, "load_model", refuse)
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_PASSED
    assert "RESULT: PASSED" in capsys.readouterr().out


def test_shifted_traffic_fails_and_names_the_feature_that_moved(served_settings, traffic,
                                                                capsys):
    shifted = traffic.assign(num_streams=traffic["num_streams"] * 3)
    log_traffic(served_settings, shifted)
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_FAILED
    out = capsys.readouterr().out
    assert "X WASSERSTEIN TEST FAILED" in out
    assert "FEATURE num_streams FAILED" in out
    assert "FEATURE country PASSED" in out
    assert "Drifted features: num_streams" in out


def test_a_changed_category_mix_is_caught_per_feature(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic.assign(country="singapore"))
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_FAILED
    assert "FEATURE country FAILED" in capsys.readouterr().out


def test_injected_outliers_fail_the_outlier_test(served_settings, traffic, capsys):
    outliers = traffic.copy()
    outliers.loc[:29, "age"] = 100
    outliers.loc[:29, "num_streams"] = 1000
    log_traffic(served_settings, outliers)
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_FAILED
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("OUTLIER TEST"))
    assert line.startswith("OUTLIER TEST FAILED: 10.")  # 30 of 300 rows, and a threshold
    assert " > " in line


def test_missing_logs_give_a_clear_message_and_their_own_exit_status(served_settings,
                                                                     capsys):
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    err = capsys.readouterr().err
    assert err.startswith("nothing to monitor: no predict logs in ")
    assert "Traceback" not in err


def test_an_empty_log_gives_a_clear_message(served_settings, capsys):
    path = logs.log_path(served_settings.log_dir, "predict")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert "no predictions of model version 0.1" in capsys.readouterr().err


def test_logs_without_inputs_give_a_clear_message(served_settings, traffic, capsys):
    log_traffic(Settings(**{**served_settings.model_dump(), "log_inputs": False}), traffic)
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert "MODEL_LOG_INPUTS" in capsys.readouterr().err


def test_a_corrupt_log_gives_a_clear_message(served_settings, capsys):
    path = logs.log_path(served_settings.log_dir, "predict")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json\n")
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert "cannot be read" in capsys.readouterr().err


def test_no_model_gives_a_clear_message(settings, capsys):
    assert monitoring.run_monitor(settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert "train it first" in capsys.readouterr().err


def test_predictions_older_than_the_window_are_left_out(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic)
    path = logs.log_path(served_settings.log_dir, "predict")
    path.write_text(path.read_text().replace('"timestamp":"20', '"timestamp":"19'))
    assert monitoring.run_monitor(served_settings, days=30) == (
        monitoring.EXIT_NOTHING_TO_MONITOR)
    assert monitoring.run_monitor(served_settings, days=None) == monitoring.EXIT_PASSED


def test_the_report_and_the_plot_are_written(served_settings, traffic, tmp_path):
    log_traffic(served_settings, traffic)
    monitoring.run_monitor(served_settings, report_dir=tmp_path / "reports")
    report = json.loads(next((tmp_path / "reports").glob("monitor-0.1-*.json")).read_text())
    assert report["passed"] is True
    assert report["production_rows"] == 300
    assert {check["name"] for check in report["checks"]} >= {
        "OUTLIER TEST", "X WASSERSTEIN TEST", "Y WASSERSTEIN TEST",
        *(f"FEATURE {name}" for name in data.FEATURES)}
    png = (tmp_path / "reports" / report["plot"].rsplit("/", 1)[-1]).read_bytes()
    assert png.startswith(b"\x89PNG")


def test_without_matplotlib_the_report_is_written_and_the_plot_skipped(
        served_settings, traffic, tmp_path, monkeypatch, capsys):
    # What the serving image has: no `plots` extra. A None entry makes the import fail.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    log_traffic(served_settings, traffic)
    status = monitoring.run_monitor(served_settings, report_dir=tmp_path / "reports")
    assert status == monitoring.EXIT_PASSED
    report = json.loads(next((tmp_path / "reports").glob("monitor-0.1-*.json")).read_text())
    assert report["plot"] is None and report["passed"] is True
    assert not list((tmp_path / "reports").glob("*.png"))
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_a_large_window_is_checked_on_a_sample(served_settings, monkeypatch, capsys):
    monkeypatch.setattr(monitoring, "MAX_ROWS", 100)
    log_traffic(served_settings, data.make_default_dataset(n_rows=250, seed=5))
    monitoring.run_monitor(served_settings)
    assert "250 logged rows, a sample of 100" in capsys.readouterr().out


def test_the_cli_monitor_exits_with_the_check_status(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic.assign(age=90))
    assert cli.main(["monitor", "--report-dir", str(served_settings.log_dir / "r")]) == 1
    assert "FEATURE age FAILED" in capsys.readouterr().out


def test_bootstrap_wasserstein_is_exact():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(200, 3)).round(1)
    samples = rng.integers(0, 200, size=(5, 50))
    expected = [wasserstein_distance(reference.ravel(), reference[rows].ravel())
                for rows in samples]
    assert monitoring.bootstrap_wasserstein(reference, samples) == pytest.approx(expected)


def test_bootstrap_wasserstein_of_a_constant_is_zero():
    samples = np.zeros((3, 4), dtype=int)
    assert monitoring.bootstrap_wasserstein(np.ones(10), samples).tolist() == [0, 0, 0]


def test_bootstrap_total_variation_is_exact():
    codes = np.array([0, 0, 1, 2, 2, 2])
    samples = np.array([[0, 1, 2], [3, 4, 5]])
    expected = [monitoring.total_variation(codes, codes[rows], 3) for rows in samples]
    assert monitoring.bootstrap_total_variation(codes, 3, samples) == pytest.approx(expected)


def test_a_check_line_reads_like_the_course():
    check = monitoring.Check("OUTLIER TEST", 10.94, 2.1, "% outside")
    assert check.line() == "OUTLIER TEST FAILED: 10.940 > 2.100 (% outside)"
    assert monitoring.Check("X", 1.0, 1.0, "d").passed
