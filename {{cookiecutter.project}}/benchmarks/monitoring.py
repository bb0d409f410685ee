"""Calibration of the drift monitor: false alarms on unchanged traffic, detection of shifts.

Trains the model on the embedded data set (as ``make train`` does, in a temporary registry),
then runs the monitor's test (``monitoring.compare``, with the served model's predictions as
``predict`` logs them) on windows of fresh rows:

- false alarms: rows from ``data.make_default_dataset`` under new seeds, the distribution the
  model was trained on, at 20 to 2,000 rows; the share of runs that FAIL should be at most
  the stated level (``--alpha``, 1 %), within its 95 % interval;
- detection: the same rows with one thing changed (age + 5 years, streams x 1.5, the country
  mix, the plan mix), at 50 to 1,000 rows; the share of runs that FAIL is the power, and the
  smallest window caught in at least 90 % of runs is reported for each shift;
- for the mix changes, the share of the same windows in which the changed feature's own
  chi-square test, at the level split evenly over the checks (alpha / checks) and with its
  exact large-sample null (no relabelling error), rejects. One verdict over checks treated
  alike spends about that level on each (exactly that, were they independent), so on a
  change that no other check sees (the country mix) it can hardly do better: a detection
  rate under 90 % next to this bound under 90 % is a limit of the window's size at that
  level, not a fault of the test. A change that moves other checks too (the plan mix moves
  the streams, which differ by plan, and the predicted classes) can be caught more often.

Each cell is ``--runs`` independent windows, each with its own relabelling seed; the
interval is Wilson's score interval at 95 %. Usage: ``make bench-monitor`` or
``python benchmarks/monitoring.py --runs 300``.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from {{ cookiecutter.package }} import data, loading, monitoring, scoring, training
from {{ cookiecutter.package }}.config import Settings

FALSE_ALARM_SIZES = (20, 50, 200, 1000, 2000)
DETECTION_SIZES = (50, 100, 200, 300, 1000)
GOAL_ROWS, GOAL_POWER = 200, 0.9


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (95 % by default)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fresh(m: int, seed: int):
    """``m`` new rows from the training distribution."""
    return data.make_default_dataset(n_rows=m, seed=seed)[data.FEATURES]


def remixed(m: int, seed: int, column: str, shares: dict):
    """``m`` rows whose ``column`` has the shares ``shares``, every other relation unchanged.

    The number of rows of each category is drawn from the new shares (multinomial), then
    each category's rows are fresh rows of that category, so that (for example) the streams
    of each plan keep their distribution. A weighted draw without replacement from a finite
    pool would move the shares less than stated.
    """
    counts = np.random.default_rng([seed, 1]).multinomial(m, list(shares.values()))
    pool = fresh(10 * m, seed)
    parts = [pool[pool[column] == category].iloc[:count]
             for category, count in zip(shares, counts)]
    if any(len(part) < count for part, count in zip(parts, counts)):
        raise ValueError(f"too few fresh rows of some {column} to draw {m} rows from")
    window = pd.concat(parts)
    order = np.random.default_rng([seed, 2]).permutation(m)
    return window.iloc[order].reset_index(drop=True)


# The generator draws 60 % United States, and plans 50/30/20 (data.make_default_dataset).
REMIXES = {
    "country mix (US 60 % -> 45 %)": ("country", {"united_states": 0.45, "singapore": 0.55}),
    "plan mix (50/30/20 -> 35/35/30)": (
        "subscriber_type",
        {"aavail_basic": 0.35, "aavail_premium": 0.35, "aavail_unlimited": 0.30}),
}
SHIFTS = {
    "age + 5 years": lambda m, seed: fresh(m, seed).assign(
        age=lambda f: (f["age"] + 5).clip(18, 100)),
    "num_streams x 1.5": lambda m, seed: fresh(m, seed).assign(
        num_streams=lambda f: (f["num_streams"] * 1.5).round().astype("int64").clip(0, 1000)),
    **{name: (lambda m, seed, column=column, shares=shares: remixed(m, seed, column, shares))
       for name, (column, shares) in REMIXES.items()},
}


def one_check_rejects(baseline, window, column: str, level: float) -> bool:
    """Whether the chi-square test of ``column`` alone, reference against window, rejects at
    ``level`` with the chi-square distribution as its null (Pearson's test, no correction)."""
    from scipy.stats import chi2_contingency

    feature = data.SCHEMA.feature(column)
    assert isinstance(feature, data.CategoricalFeature)
    k = len(feature.categories)
    table = np.array([np.bincount(baseline.reference[column], minlength=k),
                      np.bincount(monitoring.feature_columns(window)[column], minlength=k)])
    return bool(chi2_contingency(table[:, table.sum(axis=0) > 0],
                                 correction=False).pvalue <= level)


def failure_rate(baseline, loaded, make_window, m: int, runs: int, first_seed: int,
                 alpha: float, column: str | None = None) -> tuple[int, list[float], int]:
    """How many of ``runs`` windows of ``m`` rows FAIL, the seconds each check took, and in
    how many the chi-square test of ``column`` alone rejects at ``alpha / checks``."""
    failed, seconds, bound = 0, [], 0
    for run in range(runs):
        seed = first_seed + run
        window = make_window(m, seed)
        predictions = scoring.classify(loaded.positive_probability(window).tolist())
        started = time.perf_counter()
        report = monitoring.compare(baseline, window, predictions, alpha=alpha, seed=seed)
        seconds.append(time.perf_counter() - started)
        failed += not report.passed
        if column is not None:
            bound += one_check_rejects(baseline, window, column, alpha / len(report.checks))
    return failed, seconds, bound


def cell(failed: int, runs: int) -> str:
    """``1.0 % (0.3-3.6)``: the rate and its 95 % interval."""
    low, high = wilson(failed, runs)
    return f"{100 * failed / runs:.1f} % ({100 * low:.1f}-{100 * high:.1f})"


def main(argv: list[str] | None = None) -> int:
    """Train, run every cell, print the Markdown tables; non-zero when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="windows per cell (default 200)")
    parser.add_argument("--alpha", type=float, default=Settings().monitor_alpha,
                        help="false-alarm level (default: MODEL_MONITOR_ALPHA, 0.01)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(registry_dir=Path(root) / "models", log_dir=Path(root) / "logs")
        training.train(settings)
        loaded = loading.load_model(settings)
        baseline = monitoring.load_baseline(settings, loaded)
    n_checks = monitoring.check_count(with_predictions=True)  # the served model predicts
    print(f"Model trained on the embedded data set ({baseline.training_rows} training rows, "
          f"{baseline.reference_rows} compared); "
          f"{monitoring.relabellings_for(args.alpha, n_checks)} relabellings; "
          f"level {args.alpha:g}; {args.runs} windows per cell; 95 % Wilson intervals.\n")
    goals_met = True

    print("| rows in the window | runs that FAILED (false alarms) | median s per check |")
    print("|---|---|---|")
    for i, m in enumerate(FALSE_ALARM_SIZES):
        failed, seconds, _ = failure_rate(baseline, loaded, fresh, m, args.runs,
                                          1_000_000 * (i + 1), args.alpha)
        goals_met &= wilson(failed, args.runs)[0] <= args.alpha
        print(f"| {m:,} | {cell(failed, args.runs)} | {statistics.median(seconds):.2f} |",
              flush=True)

    print("\n| shift | " + " | ".join(f"{m:,} rows" for m in DETECTION_SIZES)
          + f" | smallest window caught in {100 * GOAL_POWER:.0f} % |")
    print("|---" * (len(DETECTION_SIZES) + 2) + "|")
    bounds: dict[str, list[str]] = {}
    for j, (name, make_window) in enumerate(SHIFTS.items()):
        cells, caught, column = [], [], REMIXES.get(name, (None,))[0]
        for m in DETECTION_SIZES:
            # The seeds of a size do not depend on the sizes measured before it.
            failed, _, bound = failure_rate(baseline, loaded, make_window, m, args.runs,
                                            10_000_000 * (j + 1) + 10_000 * m, args.alpha,
                                            column)
            goals_met &= m < GOAL_ROWS or failed / args.runs >= GOAL_POWER
            caught.append(failed / args.runs >= GOAL_POWER)
            cells.append(cell(failed, args.runs))
            if column is not None:
                bounds.setdefault(name, []).append(cell(bound, args.runs))
        # The smallest window from which every measured size is caught often enough.
        passing = [m for i, m in enumerate(DETECTION_SIZES) if all(caught[i:])]
        smallest = f"{passing[0]:,} rows" if passing else f"over {DETECTION_SIZES[-1]:,} rows"
        print(f"| {name} | " + " | ".join(cells) + f" | {smallest} |", flush=True)
    print(f"\nThe changed feature's own chi-square test at {args.alpha:g} / {n_checks} checks "
          f"= {args.alpha / n_checks:.2g}, exact large-sample null, same windows (a bound for "
          "a change that no other check sees):\n")
    print("| shift | " + " | ".join(f"{m:,} rows" for m in DETECTION_SIZES) + " |")
    print("|---" * (len(DETECTION_SIZES) + 1) + "|")
    for name, cells in bounds.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nGoals (false alarms at most the level within the interval; detection >= "
          f"{100 * GOAL_POWER:.0f} % from {GOAL_ROWS:,} rows): "
          f"{'met' if goals_met else 'MISSED'}")
    return 0 if goals_met else 1


if __name__ == "__main__":
    sys.exit(main())
