"""Training benchmark: the logistic regression pipeline's fit on the CPU and on the GPU.

Fits ``training.build_pipeline(LogisticRegression(max_iter=1000))``, the candidate that training
fits on a GPU, on a data set drawn from the schema by the project's generator
(``data.make_default_dataset``, 1 million rows by default), split as training splits it (80 %
to fit). Each round fits once on the CPU and once on the GPU, alternating which goes first;
it prints the median and the range of the fit times over the rounds, the median speed-up, and
the parity figure training checks: the largest difference between the GPU fit's and the CPU
fit's held-out probabilities, against ``training.PARITY_TOLERANCE``.

The GPU fit is what ``train`` does in the GPU image: preprocessing on the CPU, the classifier
through scikit-learn's array API dispatch with CuPy (``training.fit_pipeline``); its times
include moving the encoded rows to the device and the fitted arrays back. A first GPU fit,
not timed, compiles CuPy's kernels. The random forest candidate has no array API support and
fits on the CPU in either image; it is not measured here.

Without a GPU (``device.detect`` says why) only the CPU figures are printed. Times are wall
clock on whatever else the machine is running: compare figures from one run, not across runs.

Run: ``make bench-train`` or ``.venv/bin/python benchmarks/training.py --help``.
"""

import argparse
import statistics
import time

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from {{ cookiecutter.package }} import data, device, training


def timed_fit(pipeline, X, y, compute=None):
    """Fit a fresh copy of ``pipeline``; return it and the seconds the fit took."""
    started = time.perf_counter()
    fitted = training.fit_pipeline(clone(pipeline), X, y, compute)
    return fitted, time.perf_counter() - started


def summary(name, seconds, n_rows):
    """One line: median and range of the fit times, and rows fitted per second."""
    median = statistics.median(seconds)
    return (f"{name:<4} fit: median {median:7.2f} s (min {min(seconds):.2f}, max "
            f"{max(seconds):.2f}, {len(seconds)} rounds), {n_rows / median:,.0f} rows/s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows to generate (default 1,000,000; 80 %% are fitted)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--seed", type=int, default=training.SEED)
    args = parser.parse_args(argv)

    compute = device.detect()
    print(compute.describe())
    frame = data.make_default_dataset(n_rows=args.rows, seed=args.seed)
    X_train, X_test, y_train, _ = train_test_split(
        frame[data.FEATURES], frame[data.TARGET], test_size=training.TEST_SIZE,
        stratify=frame[data.TARGET], random_state=args.seed)
    pipeline = training.build_pipeline(LogisticRegression(max_iter=1000))
    print(f"data: {len(X_train):,} rows fitted, {len(X_test):,} held out "
          f"({args.rows:,} generated from the schema)")

    on_gpu = compute.accelerator is not None
    if on_gpu:
        timed_fit(pipeline, X_train.iloc[:1000], y_train.iloc[:1000], compute)  # warm-up
    times = {"cpu": [], "gpu": []}
    fitted = {}
    for round_number in range(args.rounds):
        order = ["cpu", "gpu"] if round_number % 2 == 0 else ["gpu", "cpu"]
        for where in order:
            if where == "gpu" and not on_gpu:
                continue
            fitted[where], seconds = timed_fit(pipeline, X_train, y_train,
                                               compute if where == "gpu" else None)
            times[where].append(seconds)
    print(summary("cpu", times["cpu"], len(X_train)))
    if not on_gpu:
        print(f"gpu  fit: not measured (no GPU figure without a GPU): {compute.fallback_reason}")
        return 0
    if compute.fallback_reason:  # the device failed during a fit: its times are the CPU's
        print(f"gpu  fit: fell back to the CPU: {compute.fallback_reason}")
        return 1
    print(summary("gpu", times["gpu"], len(X_train)))
    print(f"speed-up: {statistics.median(times['cpu']) / statistics.median(times['gpu']):.1f}x "
          "(median CPU fit time / median GPU fit time)")
    difference = float(np.max(np.abs(fitted["gpu"].predict_proba(X_test)[:, 1]
                                     - fitted["cpu"].predict_proba(X_test)[:, 1])))
    verdict = "within" if difference <= training.PARITY_TOLERANCE else "OUTSIDE"
    print(f"parity: held-out probabilities differ by up to {difference:.3g} over "
          f"{len(X_test):,} rows, {verdict} the tolerance {training.PARITY_TOLERANCE:g}")
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    raise SystemExit(main())
