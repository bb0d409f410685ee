"""Drift monitoring: logged production inputs against the model's archived training data.

The course's method. The training data is encoded (one-hot categories, standardised numbers,
from ``data.SCHEMA``), reduced to two dimensions with PCA, and an ``EllipticEnvelope``
(contamination 1 %) is fitted there. Bootstrap samples of the training data (1000 by
default) give the distribution of each statistic when nothing has changed; its high
percentile is the threshold. The statistics:

- the outlier percentage: production rows outside the training envelope;
- the Wasserstein distance of X: all encoded features, pooled;
- the Wasserstein distance of y: the logged predicted classes against the model's
  predictions on the training data (labels arrive late; predictions are there at once);
- per feature: the Wasserstein distance in training standard deviations (numbers) or the
  total variation distance of the category frequencies (categories), to say what moved.

The bootstrap samples have the size of the production sample, so that a small window of
traffic is judged by the noise a sample of its size has (the course draws 80 % of the
training rows; that size would fail small windows for being small). The statistics of all
samples are computed at once with counting on the training data's distinct values: exact
distances, in milliseconds.

Exit statuses of ``<project> monitor``: 0 every check passed, 1 a check failed,
3 nothing to monitor (no model, no logged rows or no logged inputs).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from scipy.stats import wasserstein_distance
from sklearn.covariance import EllipticEnvelope
from sklearn.decomposition import PCA

from . import data, logs, model, scoring
from .config import Settings
from .registry import ModelNotFoundError

logger = logging.getLogger(__name__)

EXIT_PASSED, EXIT_FAILED, EXIT_NOTHING_TO_MONITOR = 0, 1, 3
N_BOOTSTRAP = 1000
PERCENTILE = 99.0
CONTAMINATION = 0.01
# Larger windows are subsampled: thresholds for 2,000 rows are already tight.
MAX_ROWS = 2000
SEED = 0


class NothingToMonitor(Exception):
    """There is no production data (or no model) to check; the message says what is missing."""


@dataclass(frozen=True)
class Check:
    """One statistic of the production sample against its bootstrap threshold."""

    name: str
    value: float
    threshold: float
    description: str
    feature: str | None = None

    @property
    def passed(self) -> bool:
        """Within the range the training data's own samples reach."""
        return self.value <= self.threshold

    def line(self) -> str:
        """``OUTLIER TEST FAILED: 10.94 > 2.10 (...)``."""
        verdict, sign = ("PASSED", "<=") if self.passed else ("FAILED", ">")
        return (f"{self.name} {verdict}: {self.value:.3f} {sign} {self.threshold:.3f} "
                f"({self.description})")


@dataclass
class Report:
    """The outcome of a drift check."""

    model_version: str
    training_rows: int
    production_rows: int
    sample_rows: int
    n_bootstrap: int
    percentile: float
    checks: list[Check]
    generated_at: str = field(default_factory=logs.utc_now)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def drifted_features(self) -> list[str]:
        """The features whose own check failed."""
        return [c.feature for c in self.checks if c.feature is not None and not c.passed]

    def to_dict(self) -> dict:
        """A JSON-ready view."""
        result = asdict(self)
        result["checks"] = [{**asdict(c), "passed": c.passed} for c in self.checks]
        result["passed"] = self.passed
        result["drifted_features"] = self.drifted_features
        return result

    def text(self) -> str:
        """The readable report: one PASS/FAIL line per check, then the verdict."""
        failed = [c for c in self.checks if not c.passed]
        lines = [c.line() for c in self.checks]
        if self.drifted_features:
            lines.append(f"Drifted features: {', '.join(self.drifted_features)}")
        verdict = "PASSED" if not failed else f"FAILED ({len(failed)} of {len(self.checks)})"
        lines.append(f"RESULT: {verdict}")
        return "\n".join(lines)


class FeatureSpace:
    """One-hot categories and standardised numbers, with the training data's statistics."""

    def __init__(self, training: pd.DataFrame):
        self.means = {f.name: float(training[f.name].mean()) for f in data.SCHEMA.numeric}
        # A constant column would divide by zero; its spread counts as one unit instead.
        self.stds = {f.name: float(training[f.name].std(ddof=0)) or 1.0
                     for f in data.SCHEMA.numeric}

    def standardised(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        """A numeric feature in training standard deviations from the training mean."""
        return (frame[name].to_numpy(dtype=float) - self.means[name]) / self.stds[name]

    @staticmethod
    def codes(frame: pd.DataFrame, feature: data.CategoricalFeature) -> np.ndarray:
        """A categorical feature as indices into the schema's categories."""
        index = {category: i for i, category in enumerate(feature.categories)}
        return np.fromiter((index[value] for value in frame[feature.name]), dtype=np.int64,
                           count=len(frame))

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The encoded matrix: one-hot blocks, then the standardised numbers."""
        blocks = []
        for feature in data.SCHEMA.features:
            if isinstance(feature, data.CategoricalFeature):
                blocks.append(np.eye(len(feature.categories))[self.codes(frame, feature)])
            else:
                blocks.append(self.standardised(frame, feature.name)[:, None])
        return np.hstack(blocks)


def bootstrap_wasserstein(reference: np.ndarray, samples: np.ndarray,
                          chunk: int = 50) -> np.ndarray:
    """Exact Wasserstein-1 distance between ``reference`` and each bootstrap sample.

    ``reference`` is (n,) or (n, p) (pooled); ``samples`` is a (B, m) matrix of row indices.
    Every sample only holds values of the reference, so both distributions live on its
    distinct values: the distance is the area between the two step CDFs there.
    """
    grid, codes = np.unique(reference, return_inverse=True)
    codes = codes.reshape(reference.shape)
    k = grid.size
    if k < 2:
        return np.zeros(len(samples))
    reference_cdf = np.cumsum(np.bincount(codes.ravel(), minlength=k)) / codes.size
    widths = np.diff(grid)
    distances = np.empty(len(samples))
    for start in range(0, len(samples), chunk):
        block = codes[samples[start:start + chunk]].reshape(len(samples[start:start + chunk]), -1)
        offsets = (np.arange(len(block)) * k)[:, None]
        counts = np.bincount((block + offsets).ravel(), minlength=len(block) * k)
        cdf = np.cumsum(counts.reshape(len(block), k), axis=1) / block.shape[1]
        distances[start:start + len(block)] = np.abs(cdf[:, :-1] - reference_cdf[:-1]) @ widths
    return distances


def bootstrap_total_variation(codes: np.ndarray, k: int, samples: np.ndarray) -> np.ndarray:
    """Total variation distance of category frequencies: reference vs each sample."""
    reference = np.bincount(codes, minlength=k) / len(codes)
    offsets = (np.arange(len(samples)) * k)[:, None]
    counts = np.bincount((codes[samples] + offsets).ravel(), minlength=len(samples) * k)
    frequencies = counts.reshape(len(samples), k) / samples.shape[1]
    return 0.5 * np.abs(frequencies - reference).sum(axis=1)


def total_variation(reference: np.ndarray, sample: np.ndarray, k: int) -> float:
    """Total variation distance between the category frequencies of two code arrays."""
    p = np.bincount(reference, minlength=k) / len(reference)
    q = np.bincount(sample, minlength=k) / len(sample)
    return float(0.5 * np.abs(p - q).sum())


class Baseline:
    """What production is compared with: the training data, encoded, with its envelope."""

    def __init__(self, training: pd.DataFrame, predictions: np.ndarray | None = None,
                 seed: int = SEED):
        self.training = training.reset_index(drop=True)
        self.space = FeatureSpace(self.training)
        self.matrix = self.space.encode(self.training)
        self.pca = PCA(n_components=2, random_state=seed).fit(self.matrix)
        self.projected = self.pca.transform(self.matrix)
        self.envelope = EllipticEnvelope(contamination=CONTAMINATION,
                                         random_state=seed).fit(self.projected)
        # Bootstrap samples draw training rows, so each row's outlier flag is computed once.
        self.outliers = self.envelope.predict(self.projected) == -1
        self.predictions = predictions

    def is_outlier(self, frame: pd.DataFrame) -> np.ndarray:
        """Whether each row falls outside the training envelope."""
        return self.envelope.predict(self.pca.transform(self.space.encode(frame))) == -1


def compare(baseline: Baseline, production: pd.DataFrame,
            predictions: np.ndarray | None = None, *, model_version: str = "",
            n_bootstrap: int = N_BOOTSTRAP, percentile: float = PERCENTILE,
            seed: int = SEED) -> Report:
    """Check a production sample against the baseline; one ``Check`` per statistic."""
    rng = np.random.default_rng(seed)
    total = len(production)
    if total > MAX_ROWS:
        keep = np.sort(rng.choice(total, MAX_ROWS, replace=False))
        production = production.iloc[keep].reset_index(drop=True)
        predictions = predictions[keep] if predictions is not None else None
    production = production.reset_index(drop=True)
    m = len(production)
    samples = rng.integers(0, len(baseline.training), size=(n_bootstrap, m))

    def threshold(values: np.ndarray) -> float:
        return float(np.percentile(values, percentile))

    checks = [
        Check("OUTLIER TEST", 100 * float(baseline.is_outlier(production).mean()),
              threshold(100 * baseline.outliers[samples].mean(axis=1)),
              "% of rows outside the training envelope"),
        Check("X WASSERSTEIN TEST",
              float(wasserstein_distance(baseline.matrix.ravel(),
                                         baseline.space.encode(production).ravel())),
              threshold(bootstrap_wasserstein(baseline.matrix, samples)),
              "distance of the encoded features, pooled"),
    ]
    if baseline.predictions is not None and predictions is not None:
        checks.append(Check(
            "Y WASSERSTEIN TEST",
            float(wasserstein_distance(baseline.predictions, predictions)),
            threshold(bootstrap_wasserstein(baseline.predictions.astype(float), samples)),
            "distance of the predicted classes",
        ))
    for feature in data.SCHEMA.features:
        name = f"FEATURE {feature.name}"
        if isinstance(feature, data.CategoricalFeature):
            k = len(feature.categories)
            reference = baseline.space.codes(baseline.training, feature)
            value = total_variation(reference, baseline.space.codes(production, feature), k)
            checks.append(Check(name, value, threshold(
                bootstrap_total_variation(reference, k, samples)),
                "distance of the category frequencies", feature.name))
        else:
            reference = baseline.space.standardised(baseline.training, feature.name)
            value = float(wasserstein_distance(
                reference, baseline.space.standardised(production, feature.name)))
            checks.append(Check(name, value, threshold(
                bootstrap_wasserstein(reference, samples)),
                "Wasserstein distance in training standard deviations", feature.name))
    return Report(model_version=model_version, training_rows=len(baseline.training),
                  production_rows=total, sample_rows=m, n_bootstrap=n_bootstrap,
                  percentile=percentile, checks=checks)


def production_sample(settings: Settings, *, version: str, test_mode: bool = False,
                      days: float | None = 30) -> tuple[pd.DataFrame, np.ndarray]:
    """The logged inputs and predicted classes of ``version`` from the last ``days`` days.

    Raises ``NothingToMonitor`` when there are no predict logs, no rows of the version in the
    window, or the rows were logged without their inputs.
    """
    files = logs.log_files(settings.log_dir, "predict", test_mode=test_mode)
    if not files:
        raise NothingToMonitor(f"no predict logs in {settings.log_dir}: nothing was predicted "
                               "yet, so there is no production data to check")
    try:
        records = logs.read_log(settings.log_dir, "predict", test_mode=test_mode)
    except logs.LogFormatError as error:
        raise NothingToMonitor(f"the predict log cannot be read: {error}") from None
    since = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat() if days else ""
    rows = [r for r in records
            if r.get("model_version") == version and str(r.get("timestamp", "")) >= since]
    window = f"in the last {days:g} days" if days else "in the logs"
    if not rows:
        raise NothingToMonitor(f"no predictions of model version {version} {window} "
                               f"({len(records)} logged rows in {len(files)} files)")
    inputs = [r["input"] for r in rows if isinstance(r.get("input"), dict)]
    if len(inputs) < len(rows):
        raise NothingToMonitor(
            f"{len(rows) - len(inputs)} of {len(rows)} logged predictions {window} have no "
            "input: inputs are logged only while MODEL_LOG_INPUTS is true")
    try:
        frame = data.validate_records(pd.DataFrame.from_records(inputs))
    except data.DataValidationError as error:
        raise NothingToMonitor(f"the logged inputs do not match the schema: {error}") from None
    predictions = np.array([r.get("prediction", -1) for r in rows], dtype=float)
    return frame, predictions


def plot(baseline: Baseline, production: pd.DataFrame, report: Report,
         path: Path) -> Path | None:
    """A PNG: production rows over the training data and envelope (PCA), and feature drift.

    None when matplotlib (the ``plots`` extra) is not installed, as in the serving image: the
    JSON report and the exit status carry every check without it.
    """
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")  # files only: no display on servers and in CronJobs
    import matplotlib.pyplot as plt

    figure, (scatter, bars) = plt.subplots(1, 2, figsize=(12, 5),
                                           gridspec_kw={"width_ratios": [3, 2]})
    train_xy = baseline.projected
    prod_xy = baseline.pca.transform(baseline.space.encode(production))
    low = np.minimum(train_xy.min(axis=0), prod_xy.min(axis=0)) - 0.5
    high = np.maximum(train_xy.max(axis=0), prod_xy.max(axis=0)) + 0.5
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
    level = baseline.envelope.decision_function(np.c_[xx.ravel(), yy.ravel()])
    scatter.contour(xx, yy, level.reshape(xx.shape), levels=[0], colors="black",
                    linewidths=1.5)
    scatter.scatter(*train_xy.T, s=8, c="lightgray", label="training data")
    outside = baseline.envelope.predict(prod_xy) == -1
    scatter.scatter(*prod_xy[~outside].T, s=12, c="tab:blue", alpha=0.7,
                    label="production, inside the envelope")
    scatter.scatter(*prod_xy[outside].T, s=18, c="tab:red", marker="x",
                    label="production, outlier")
    scatter.set(xlabel="first principal component", ylabel="second principal component",
                title="Production inputs vs the training envelope (black line)")
    scatter.legend(loc="best", fontsize=8)

    features = [c for c in report.checks if c.feature is not None]
    ratios = [c.value / c.threshold if c.threshold > 0 else float(c.value > 0) for c in features]
    bars.barh([c.feature for c in features], ratios,
              color=["tab:green" if c.passed else "tab:red" for c in features])
    bars.axvline(1.0, color="black", linestyle="--", linewidth=1)
    bars.set(xlabel="distance / threshold (over 1 = drifted)", title="Drift per feature")
    verdict = "PASSED" if report.passed else "FAILED"
    figure.suptitle(f"Model {report.model_version}: drift check {verdict} "
                    f"({report.sample_rows} production rows, {report.training_rows} training)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def run_monitor(settings: Settings, *, test_mode: bool = False, days: float | None = 30,
                report_dir: Path | None = None, n_bootstrap: int = N_BOOTSTRAP,
                percentile: float = PERCENTILE) -> int:
    """Check the logged traffic of the configured version; print, write JSON and PNG.

    Returns 0 when every check passed, 1 when one failed, 3 when there is nothing to check.
    """
    try:
        # The model as the service serves it (its verified scoring spec when it has one).
        loaded = scoring.load_served_model(settings, test_mode=test_mode)
        training = model.load_training_data(settings, test_mode=test_mode)
        production, predictions = production_sample(
            settings, version=loaded.version, test_mode=test_mode, days=days)
    except (NothingToMonitor, ModelNotFoundError) as error:
        print(f"nothing to monitor: {error}", file=sys.stderr)
        return EXIT_NOTHING_TO_MONITOR
    features = training[data.FEATURES]
    reference = (loaded.positive_probability(features) > 0.5).astype(float)
    baseline = Baseline(features, reference)
    report = compare(baseline, production, predictions, model_version=loaded.version,
                     n_bootstrap=n_bootstrap, percentile=percentile)
    report_dir = Path(report_dir) if report_dir is not None else settings.log_dir / "monitoring"
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem = f"monitor{'-test' if test_mode else ''}-{loaded.version}-{stamp}"
    image = plot(baseline, production.iloc[:MAX_ROWS], report, report_dir / f"{stem}.png")
    document = report_dir / f"{stem}.json"
    document.write_bytes(orjson.dumps({**report.to_dict(), "plot": str(image) if image else None},
                                      option=orjson.OPT_INDENT_2))
    sampled = (f", a sample of {report.sample_rows}"
               if report.sample_rows < report.production_rows else "")
    print(f"Drift check of model {loaded.version}: {report.production_rows} logged rows"
          f"{sampled} against {report.training_rows} training rows; thresholds: "
          f"{report.percentile:g}th percentile of {report.n_bootstrap} bootstrap samples")
    print(report.text())
    print(f"Report: {document}")
    print(f"Plot: {image}" if image else
          "Plot: not drawn; matplotlib is not installed (the project's `plots` extra, which "
          "`make install` includes)")
    return EXIT_PASSED if report.passed else EXIT_FAILED
