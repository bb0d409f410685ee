"""Drift monitoring: one verdict at a stated false-alarm level; shifts and outliers fail."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2_contingency, chisquare, wasserstein_distance

from {{ cookiecutter.package }} import (
    cli, data, loading, logs, monitoring, registry, scoring, training,
)
from {{ cookiecutter.package }}.config import Settings

SEED = 0  # the relabellings of the tests that expect a verdict: the same on every run


def log_traffic(settings: Settings, frame) -> None:
    """Predict ``frame`` with the served model, as production traffic would."""
    loaded = loading.load_model(settings)
    scoring.predict(loaded, frame[data.FEATURES], settings=settings)


@pytest.fixture
def traffic():
    """Rows drawn from the training data's distribution (another sample of it)."""
    return data.make_default_dataset(n_rows=300, seed=11)[data.FEATURES]


@pytest.fixture
def served_baseline(served_settings):
    """The served model's baseline, as the monitor builds it, and the loaded model."""
    loaded = loading.load_model(served_settings)
    return monitoring.load_baseline(served_settings, loaded), loaded


def check_window(served_baseline, window, **options) -> monitoring.Report:
    """The monitor's test of one window, with the predictions the service would log."""
    baseline, loaded = served_baseline
    predictions = scoring.classify(loaded.positive_probability(window).tolist())
    return monitoring.compare(baseline, window, predictions, **options)


# The verdict means what it says -------------------------------------------------------------

def test_in_distribution_windows_of_1000_rows_rarely_fail(served_baseline):
    # 20 fresh windows of 1,000 rows from the training distribution, at level 5 %: about one
    # false alarm is expected; 4 or more has probability 1.6 % for a test at its level. A
    # check that ignores the reference sample's own error fails most of these windows.
    reports = [check_window(served_baseline, data.make_default_dataset(1000, seed=seed)[
        data.FEATURES], alpha=0.05, n_permutations=199, seed=seed) for seed in range(100, 120)]
    assert sum(not report.passed for report in reports) <= 3


def test_windows_from_the_training_rows_themselves_pass_at_their_level(served_baseline):
    # The reference rows relabelled as production: exchangeable by construction.
    baseline, _ = served_baseline
    failures = 0
    for seed in range(20):
        rows = np.random.default_rng(seed).choice(baseline.reference_rows, 100, replace=False)
        window = {name: values[rows] for name, values in baseline.reference.items()}
        failures += not monitoring.compare(baseline, window, alpha=0.05, n_permutations=199,
                                           seed=seed).passed
    assert failures <= 3


def test_shifted_windows_are_detected_and_the_feature_is_named(served_baseline):
    for seed in range(5):
        window = data.make_default_dataset(200, seed=seed)[data.FEATURES]
        report = check_window(served_baseline, window.assign(
            num_streams=(window["num_streams"] * 1.5).round().astype("int64")), seed=seed)
        assert not report.passed
        assert "num_streams" in report.drifted_features
        assert "country" not in report.drifted_features


@pytest.fixture(scope="module")
def default_baseline(served_registry):
    """The reference ``make train`` gives the monitor: the embedded data set's training split
    (its envelope fitted on 500 of those rows), scored by the served model."""
    loaded = loading.load_model(Settings(registry_dir=served_registry))
    reference = training.training_split(data.make_default_dataset())[data.FEATURES]
    baseline = monitoring.Baseline(reference, lambda rows: scoring.classify(
        loaded.positive_probability(rows).tolist()))
    return baseline, loaded


@pytest.fixture(scope="module")
def shifts():
    """The calibration benchmark's shifted windows (benchmarks/monitoring.py)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "monitoring.py"
    spec = importlib.util.spec_from_file_location("monitoring_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SHIFTS


def test_the_default_reference_is_the_training_split_less_the_envelope_rows(default_baseline):
    baseline, _ = default_baseline
    assert baseline.training_rows == 8000  # 10,000 rows, a fifth held out
    assert baseline.reference_rows == 8000 - monitoring.MAX_FIT_ROWS


def test_a_plan_mix_change_is_caught_in_200_rows(default_baseline, shifts):
    # Plans 50/30/20 -> 35/35/30 in 200 rows, at the default level: 35 of these 40 windows
    # are caught. Against the 600 reference rows of the former 1,000-row data set, with the
    # total variation of the shares as the plan's statistic, 29 of the same 40 were.
    make_window = shifts["plan mix (50/30/20 -> 35/35/30)"]
    caught = sum(not check_window(default_baseline, make_window(200, seed), seed=seed).passed
                 for seed in range(40))
    assert caught >= 33


def test_unchanged_windows_of_2000_rows_rarely_fail_against_the_default_reference(
        default_baseline):
    # The daily CronJob's case: large windows against the full reference, at level 5 %.
    # About 1.5 of 30 false alarms are expected; 6 or more has probability 0.8 %.
    failed = sum(not check_window(default_baseline, data.make_default_dataset(
        2000, seed=seed)[data.FEATURES], alpha=0.05, n_permutations=199, seed=seed).passed
        for seed in range(200, 230))
    assert failed <= 5


def test_the_overall_p_value_is_valid_under_the_null_hypothesis():
    # Exchangeable rows of statistics (what relabellings give under the null hypothesis),
    # with ties: the overall p-value is at most alpha in at most alpha of the cases.
    rng = np.random.default_rng(0)
    p_values = [monitoring.min_p_test(rng.integers(0, 8, size=(100, 4)).astype(float),
                                      0.05)["p_value"] for _ in range(2000)]
    assert np.mean(np.array(p_values) <= 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 2000)
    assert np.mean(np.array(p_values) <= 0.2) <= 0.2 + 2 * np.sqrt(0.2 * 0.8 / 2000)


def test_a_check_fails_exactly_when_its_value_exceeds_its_threshold():
    rng = np.random.default_rng(1)
    for _ in range(200):
        table = rng.integers(0, 5, size=(100, 3)).astype(float)
        table[0] += rng.integers(0, 4, size=3)  # some observed rows stand out
        test = monitoring.min_p_test(table, 0.05)
        np.testing.assert_array_equal(test["passed"], table[0] <= test["thresholds"])
        assert (test["p_value"] > 0.05) == test["passed"].all()
        assert test["p_value"] == pytest.approx(test["adjusted"].min())


def test_an_observed_statistic_above_every_relabelling_gets_the_smallest_p_value():
    table = np.vstack([[5.0, 0.0], np.zeros((99, 2))])
    test = monitoring.min_p_test(table, 0.05)
    assert test["p_value"] == pytest.approx(0.01)
    assert test["passed"].tolist() == [False, True]  # ties with every relabelling pass


def test_too_few_relabellings_for_the_level_are_refused(served_baseline, traffic):
    with pytest.raises(ValueError, match="cannot reach a p-value of 0.01"):
        check_window(served_baseline, traffic, alpha=0.01, n_permutations=50)


def test_a_small_level_takes_enough_relabellings_for_a_shift_to_fail(served_baseline):
    # With the default 4,999 relabellings, each of the 7 checks' largest statistic can sit
    # in another one: no adjusted p-value could go under 7/5000, so a level of 0.001 could
    # never fail.
    window = data.make_default_dataset(200, seed=1)[data.FEATURES]
    report = check_window(served_baseline, window.assign(age=window["age"] + 20), alpha=0.001,
                          seed=SEED)
    assert monitoring.N_PERMUTATIONS < 7 / 0.001 <= report.n_permutations
    assert not report.passed


def test_the_same_seed_gives_the_same_report(served_baseline, traffic):
    first, second = (check_window(served_baseline, traffic, seed=3) for _ in range(2))
    assert first.checks == second.checks and first.seed == 3


def test_the_check_count_is_the_number_of_checks_a_report_holds(served_baseline, traffic):
    baseline, _ = served_baseline
    with_y = check_window(served_baseline, traffic, seed=3, n_permutations=999)
    without_y = monitoring.compare(baseline, traffic, seed=3, n_permutations=999)
    assert len(with_y.checks) == monitoring.check_count(True)
    assert len(without_y.checks) == monitoring.check_count(False)


def test_a_run_without_seed_draws_and_records_one(served_baseline, traffic):
    first, second = (check_window(served_baseline, traffic, alpha=0.1, n_permutations=99)
                     for _ in range(2))
    assert first.seed != second.seed


def test_the_statistics_are_the_course_distances(served_baseline, traffic):
    baseline, loaded = served_baseline
    report = check_window(served_baseline, traffic, seed=SEED)
    values = {check.name: check.value for check in report.checks}
    columns = monitoring.feature_columns(traffic)
    reference = baseline.space.encode(baseline.reference)
    assert values["X WASSERSTEIN TEST"] == pytest.approx(wasserstein_distance(
        reference.ravel(), baseline.space.encode(columns).ravel()))
    assert values["OUTLIER TEST"] == pytest.approx(100 * baseline.is_outlier(columns).mean())
    predictions = scoring.classify(loaded.positive_probability(traffic).tolist())
    assert values["Y WASSERSTEIN TEST"] == pytest.approx(
        wasserstein_distance(baseline.predictions, predictions))
    assert values["FEATURE age"] == pytest.approx(wasserstein_distance(
        baseline.space.standardised(baseline.reference, "age"),
        baseline.space.standardised(columns, "age")))
    assert values["FEATURE subscriber_type"] == pytest.approx(chi2_contingency(
        [np.bincount(baseline.reference["subscriber_type"], minlength=3),
         np.bincount(columns["subscriber_type"], minlength=3)], correction=False).statistic)


def test_wasserstein_of_relabellings_is_exact():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(200, 3)).round(1)
    sides = np.array([rng.choice(200, 50, replace=False) for _ in range(5)])
    expected = [wasserstein_distance(pool[rows].ravel(), np.delete(pool, rows, axis=0).ravel())
                for rows in sides]
    assert monitoring.wasserstein(pool, sides) == pytest.approx(expected)


def test_wasserstein_of_a_constant_is_zero():
    assert monitoring.wasserstein(np.ones(10), np.zeros((3, 4), dtype=int)).tolist() == [0] * 3


def test_chi_square_of_relabellings_is_pearsons():
    codes = np.array([0, 0, 1, 2, 2, 2, 0, 2, 2])  # no row of category 3: it has no cell
    sides = np.array([[0, 1, 2], [3, 4, 5], [0, 3, 5], [1, 2, 8]])
    expected = [chi2_contingency([np.bincount(codes[rows], minlength=3),
                                  np.bincount(np.delete(codes, rows), minlength=3)],
                                 correction=False).statistic for rows in sides]
    assert monitoring.chi_square(codes, 4, sides) == pytest.approx(expected)


def test_random_subsets_are_distinct_and_uniform():
    # All 20 subsets of 3 of range(6) in 20,000 draws, filled 7 rows at a time (the work
    # arrays' room): each about 1,000 times. A sampler that settled repeated draws on a
    # neighbouring value, or kept the rows' first values, fails the goodness of fit.
    rows = 20_000
    sides = monitoring.random_subsets(np.random.default_rng(0), 6, 3, rows,
                                      monitoring.subset_scratch(6, rows, cells=6 * 7))
    ordered = np.sort(sides, axis=1)
    assert (np.diff(ordered, axis=1) > 0).all()
    _, counts = np.unique(ordered, axis=0, return_counts=True)
    assert len(counts) == 20
    assert chisquare(counts).pvalue > 0.001
    # Half of the values, many rounds of redraws: every value as often as the others.
    half = monitoring.random_subsets(np.random.default_rng(1), 40, 20, 5_000)
    assert (np.diff(np.sort(half, axis=1), axis=1) > 0).all()
    assert chisquare(np.bincount(half.ravel(), minlength=40)).pvalue > 0.001


@pytest.mark.parametrize("rows", [60, 400])  # fewer, then more rows than the reference
def test_the_statistics_of_relabellings_are_the_direct_ones(served_baseline, rows):
    # Counted from the relabelled side's rows only (joint codes, one grid for the pooled
    # numbers), each check's statistic equals scipy's on the explicit split of the pool.
    baseline, loaded = served_baseline
    window = data.make_default_dataset(rows, seed=rows)[data.FEATURES]
    columns = monitoring.feature_columns(window)
    classes = scoring.classify(loaded.positive_probability(window).tolist())
    pool = monitoring.PooledChecks(baseline, columns, classes)
    assert pool.production_side == (rows <= baseline.reference_rows)
    pooled = {name: np.concatenate([baseline.reference[name], columns[name]])
              for name in columns}
    encoded = baseline.space.encode(pooled)
    outliers = np.concatenate([baseline.outliers, baseline.is_outlier(columns)])
    predicted = np.concatenate([baseline.predictions, classes])
    sides = np.vstack([pool.observed[None, :], monitoring.random_subsets(
        np.random.default_rng(rows), pool.n_pool, len(pool.observed), 6)])
    for side, statistics in zip(sides, pool.statistics(sides)):
        chosen = np.isin(np.arange(pool.n_pool), side)
        production = chosen if pool.production_side else ~chosen
        expected = [100 * outliers[production].mean(),
                    wasserstein_distance(encoded[production].ravel(),
                                         encoded[~production].ravel()),
                    wasserstein_distance(predicted[production], predicted[~production])]
        for feature in data.SCHEMA.features:
            values = pooled[feature.name]
            if isinstance(feature, data.CategoricalFeature):
                table = np.array([np.bincount(values[production], minlength=len(
                    feature.categories)), np.bincount(values[~production], minlength=len(
                        feature.categories))])
                expected.append(chi2_contingency(table[:, table.sum(axis=0) > 0],
                                                 correction=False).statistic)
            else:
                values = baseline.space.standardised(pooled, feature.name)
                expected.append(wasserstein_distance(values[production], values[~production]))
        assert statistics == pytest.approx(expected)
    assert [name for name, _, _ in pool.checks][:3] == [
        "OUTLIER TEST", "X WASSERSTEIN TEST", "Y WASSERSTEIN TEST"]


# The command: verdicts, statuses, reports ----------------------------------------------------

def test_in_distribution_traffic_passes(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic)
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_PASSED
    out = capsys.readouterr().out
    assert "OUTLIER TEST PASSED" in out
    assert "X WASSERSTEIN TEST PASSED" in out
    assert "RESULT: PASSED (p = " in out
    assert "false-alarm level 0.01" in out


def test_the_monitor_scores_with_the_stored_spec_as_the_service_does(
        served_settings, traffic, monkeypatch, capsys):
    log_traffic(served_settings, traffic)

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded although the registry holds a spec")

    monkeypatch.setattr(loading, "load_pipeline", refuse)
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_PASSED


def test_shifted_traffic_fails_and_names_the_feature_that_moved(served_settings, traffic,
                                                                capsys):
    shifted = traffic.assign(num_streams=traffic["num_streams"] * 3)
    log_traffic(served_settings, shifted)
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_FAILED
    out = capsys.readouterr().out
    assert "X WASSERSTEIN TEST FAILED" in out
    assert "FEATURE num_streams FAILED" in out
    assert "FEATURE country PASSED" in out
    assert "Drifted features: num_streams" in out
    assert "RESULT: FAILED" in out


def test_a_changed_category_mix_is_caught_per_feature(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic.assign(country="singapore"))
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_FAILED
    assert "FEATURE country FAILED" in capsys.readouterr().out


def test_injected_outliers_fail_the_outlier_test(served_settings, traffic, capsys):
    outliers = traffic.copy()
    outliers.loc[:29, "age"] = 100
    outliers.loc[:29, "num_streams"] = 1000
    log_traffic(served_settings, outliers)
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_FAILED
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("OUTLIER TEST"))
    assert line.startswith("OUTLIER TEST FAILED: 1")  # 30 of 300 rows and more: 10 % or over
    assert " > " in line


@pytest.mark.parametrize("rows", [1, 5, 19])
def test_too_few_rows_are_not_enough_data_with_their_own_status(served_settings, traffic,
                                                                rows, capsys):
    log_traffic(served_settings, traffic.iloc[:rows])
    status = monitoring.run_monitor(served_settings)
    assert status == monitoring.EXIT_NOT_ENOUGH_DATA == 4
    out, err = capsys.readouterr()
    assert "RESULT" not in out
    assert err.startswith(f"not enough data: {rows} logged rows of model version 0.1")
    assert "MODEL_MONITOR_MIN_ROWS" in err


def test_the_minimum_comes_from_the_settings(served_settings, traffic):
    log_traffic(served_settings, traffic.iloc[:30])
    strict = Settings(**{**served_settings.model_dump(), "monitor_min_rows": 31})
    assert monitoring.run_monitor(strict) == monitoring.EXIT_NOT_ENOUGH_DATA
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_PASSED


def test_the_cli_takes_the_level_and_the_minimum(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic.iloc[:30])
    assert cli.main(["monitor", "--min-rows", "31"]) == 4
    assert cli.main(["monitor", "--alpha", "0.2", "--report-dir", "r"]) in (0, 1)
    assert "false-alarm level 0.2 " in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "0.5", "x"])
def test_an_invalid_level_is_a_setting_error(value, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_MONITOR_ALPHA", value)
    assert cli.main(["monitor"]) == 2
    assert "MODEL_MONITOR_ALPHA" in capsys.readouterr().err


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
    assert "300 of 300 logged predictions" in capsys.readouterr().err


def test_a_corrupt_line_in_the_window_gives_a_clear_message(served_settings, capsys):
    path = logs.log_path(served_settings.log_dir, "predict")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json\n")
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert f"cannot be read: {path}, line 1" in capsys.readouterr().err


def test_invalid_logged_inputs_give_a_clear_message(served_settings, capsys):
    record = {"timestamp": logs.utc_now(), "model_version": "0.1", "prediction": 1,
              "input": {**data.SCHEMA.example, "age": -4}}
    logs.append_records(logs.log_path(served_settings.log_dir, "predict"), [record] * 30)
    assert monitoring.run_monitor(served_settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert "do not match the schema" in capsys.readouterr().err


def test_no_model_gives_a_clear_message(settings, capsys):
    assert monitoring.run_monitor(settings) == monitoring.EXIT_NOTHING_TO_MONITOR
    assert "train it first" in capsys.readouterr().err


def test_predictions_older_than_the_window_are_left_out(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic)
    path = logs.log_path(served_settings.log_dir, "predict")
    path.write_text(path.read_text().replace('"timestamp":"20', '"timestamp":"19'))
    assert monitoring.run_monitor(served_settings, days=30) == (
        monitoring.EXIT_NOTHING_TO_MONITOR)
    assert monitoring.run_monitor(served_settings, days=None, seed=SEED) == (
        monitoring.EXIT_PASSED)


def test_months_and_lines_before_the_window_are_not_read(served_settings, traffic):
    # Unreadable history outside the window costs nothing and blocks nothing.
    log_traffic(served_settings, traffic)
    logs.log_path(served_settings.log_dir, "predict", month="2001-01").write_bytes(
        b"\x00 not a log at all\n")
    path = logs.log_path(served_settings.log_dir, "predict")
    path.write_bytes(b'{"timestamp":"2001-01-01T00:00:00.000000+00:00", garbage\n'
                     + path.read_bytes())
    assert monitoring.run_monitor(served_settings, seed=SEED) == monitoring.EXIT_PASSED


def test_a_large_window_is_sampled_uniformly_as_it_is_read(served_settings, monkeypatch):
    log_traffic(served_settings, data.make_default_dataset(n_rows=250, seed=5))
    frame, predictions, total = monitoring.production_sample(
        served_settings, version="0.1", max_rows=100, seed=1)
    assert (len(frame), len(predictions), total) == (100, 100, 250)
    logged = [record["input"] for record in logs.read_log(served_settings.log_dir, "predict")]
    positions = [logged.index(row) for row in frame.to_dict("records")]
    assert min(positions) < 50 and max(positions) > 200  # from all over the window


def test_a_large_window_is_checked_on_a_sample(served_settings, monkeypatch, capsys):
    monkeypatch.setattr(monitoring, "MAX_ROWS", 100)
    log_traffic(served_settings, data.make_default_dataset(n_rows=250, seed=5))
    monitoring.run_monitor(served_settings, seed=SEED)
    assert "250 logged rows, a sample of 100" in capsys.readouterr().out


def test_the_report_and_the_plot_are_written(served_settings, traffic, tmp_path):
    log_traffic(served_settings, traffic)
    monitoring.run_monitor(served_settings, report_dir=tmp_path / "reports", seed=SEED)
    report = json.loads(next((tmp_path / "reports").glob("monitor-0.1-*.json")).read_text())
    assert report["passed"] is True and report["p_value"] > report["alpha"] == 0.01
    assert report["production_rows"] == 300 and report["seed"] == SEED
    assert {check["name"] for check in report["checks"]} >= {
        "OUTLIER TEST", "X WASSERSTEIN TEST", "Y WASSERSTEIN TEST",
        *(f"FEATURE {name}" for name in data.FEATURES)}
    assert all(0 < check["p_value"] <= check["adjusted_p_value"] <= 1
               for check in report["checks"])
    png = (tmp_path / "reports" / report["plot"].rsplit("/", 1)[-1]).read_bytes()
    assert png.startswith(b"\x89PNG")


def test_without_matplotlib_the_report_is_written_and_the_plot_skipped(
        served_settings, traffic, tmp_path, monkeypatch, capsys):
    # What the serving image has: no `plots` extra. A None entry makes the import fail.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    log_traffic(served_settings, traffic)
    status = monitoring.run_monitor(served_settings, report_dir=tmp_path / "reports",
                                    seed=SEED)
    assert status == monitoring.EXIT_PASSED
    report = json.loads(next((tmp_path / "reports").glob("monitor-0.1-*.json")).read_text())
    assert report["plot"] is None and report["passed"] is True
    assert not list((tmp_path / "reports").glob("*.png"))
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_the_cli_monitor_exits_with_the_check_status(served_settings, traffic, capsys):
    log_traffic(served_settings, traffic.assign(age=90))
    assert cli.main(["monitor", "--report-dir", str(served_settings.log_dir / "r")]) == 1
    assert "FEATURE age FAILED" in capsys.readouterr().out


def test_a_check_line_reads_like_the_course():
    check = monitoring.Check("OUTLIER TEST", 10.94, 2.1, 0.001, 0.002, False, "% outside")
    assert check.line() == "OUTLIER TEST FAILED: 10.940 > 2.100 (p = 0.002; % outside)"


def test_importing_the_monitor_loads_no_scikit_learn():
    # Start-up: the command answers "nothing to monitor" or "not enough data" without it.
    code = (f"import sys, {monitoring.__name__}; "
            "sys.exit(any(m.split('.')[0] in ('sklearn', 'scipy') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# The reference ------------------------------------------------------------------------------

def test_the_archived_reference_leaves_out_the_held_out_rows(served_settings):
    artifact = registry.Registry(served_settings.registry_dir).resolve("model", "0.1")
    metadata = json.loads((artifact / registry.METADATA_FILE).read_text())
    archived = registry.Registry(served_settings.registry_dir).training_data("model", "0.1")
    metrics = metadata["metrics"]
    assert len(archived) == metrics["n_train"] < metadata["data"]["n_rows"]
    balance = archived[data.TARGET].value_counts(normalize=True)
    assert balance[1] == pytest.approx(metrics["class_balance"]["train"]["1"], abs=1e-3)


def test_the_envelope_is_fitted_on_rows_the_test_leaves_out(served_baseline):
    baseline, _ = served_baseline
    fit = baseline.training_rows - baseline.reference_rows
    assert fit == pytest.approx(monitoring.FIT_SHARE * baseline.training_rows, abs=1)
