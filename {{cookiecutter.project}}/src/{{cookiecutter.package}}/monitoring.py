"""Drift monitoring: logged production inputs against the model's archived training data.

The question is the course's: does production traffic still come from the distribution the
model was trained on? It is answered by one two-sample permutation test, at a stated
false-alarm level (``MODEL_MONITOR_ALPHA``, 1 % by default), whose per-check details are the
course's statistics:

- the outlier percentage: rows outside an ``EllipticEnvelope`` (contamination 1 %) fitted on
  the training data encoded (one-hot categories, standardised numbers) and reduced to two
  dimensions with PCA;
- the Wasserstein distance of X: all encoded features, pooled;
- the Wasserstein distance of y: the predicted classes (labels arrive late; predictions are
  there at once);
- per feature: the Wasserstein distance in training standard deviations (numbers) or the
  total variation distance of the category frequencies (categories), to say what moved.

Why a permutation test. The null hypothesis is "the production rows and the reference rows
are draws from one distribution". Under it, which of the pooled rows were logged in
production is a random labelling, so the statistics of randomly relabelled pools are the
statistics' null distribution: the sampling error of *both* samples is accounted for, at
every sample size, with no distributional assumption. The pool's labelling is drawn afresh
on every run (the seed goes into the report): a p-value from B random relabellings plus the
observed one is exact, ``P(p <= alpha) <= alpha`` (Phipson & Smyth 2010, "Permutation
p-values should never be zero").

One decision over correlated checks: each check's p-value is adjusted by the distribution
of the smallest p-value over all checks in the same relabellings (Westfall & Young's
single-step minP), so the overall verdict (some check fails) has the stated level, and a
check's threshold is the value it must exceed to fail. Ties count against the production
sample (``>=``), which keeps discrete statistics conservative.

The envelope and the standardisation are fitted on a fixed quarter of the training rows and
the rest is the reference sample: rows an envelope was fitted on fall outside it less often
than new rows, and a test that compared them with production would call that drift.

Exit statuses of ``<project> monitor``: 0 the check passed, 1 it failed (drift at the stated
level), 3 nothing to monitor (no model, no logged rows or no logged inputs), 4 not enough
data (fewer logged rows in the window than ``MODEL_MONITOR_MIN_ROWS``).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson

from . import data, loading, logs, scoring
from .config import Settings
from .registry import ModelNotFoundError, Registry, artifact_name

logger = logging.getLogger(__name__)

EXIT_PASSED, EXIT_FAILED, EXIT_NOTHING_TO_MONITOR, EXIT_NOT_ENOUGH_DATA = 0, 1, 3, 4
N_PERMUTATIONS = 999
CONTAMINATION = 0.01
# The share of the training rows the envelope and the standardisation are fitted on.
FIT_SHARE = 0.25
# Larger windows are checked on a uniform random sample; its size bounds memory and time.
MAX_ROWS = 2000
# A larger training set is compared through a fixed sample of its rows: the test's power is
# bounded by the smaller sample, and each relabelling costs time in proportion to the pool.
MAX_REFERENCE_ROWS = 10_000
SPLIT_SEED = 0
# Statistics are compared after rounding: the same distance reached by two relabellings must
# tie, whatever the floating-point order of its sums.
DECIMALS = 10


class NothingToMonitor(Exception):
    """There is no production data (or no model) to check; the message says what is missing."""


class NotEnoughData(Exception):
    """The window holds too few rows for a verdict that means anything."""


@dataclass(frozen=True)
class Check:
    """One statistic of the production sample, its threshold and its p-values."""

    name: str
    value: float
    threshold: float
    p_value: float
    adjusted_p_value: float
    passed: bool
    description: str
    feature: str | None = None

    def line(self) -> str:
        """``OUTLIER TEST FAILED: 10.940 > 2.100 (p = 0.001; ...)``: the adjusted p-value."""
        verdict, sign = ("PASSED", "<=") if self.passed else ("FAILED", ">")
        return (f"{self.name} {verdict}: {self.value:.3f} {sign} {self.threshold:.3f} "
                f"(p = {self.adjusted_p_value:.3f}; {self.description})")


@dataclass
class Report:
    """The outcome of a drift check: one verdict at level ``alpha``, and its checks."""

    model_version: str
    training_rows: int
    reference_rows: int
    production_rows: int
    sample_rows: int
    n_permutations: int
    alpha: float
    p_value: float
    seed: int
    checks: list[Check]
    generated_at: str = field(default_factory=logs.utc_now)

    @property
    def passed(self) -> bool:
        """No evidence of drift at the level ``alpha``: every check passed.

        The same as ``p_value > alpha``: the smallest adjusted p-value is the overall one.
        """
        return all(check.passed for check in self.checks)

    @property
    def drifted_features(self) -> list[str]:
        """The features whose own check failed."""
        return [c.feature for c in self.checks if c.feature is not None and not c.passed]

    def to_dict(self) -> dict:
        """A JSON-ready view."""
        result = asdict(self)
        result["passed"] = self.passed
        result["drifted_features"] = self.drifted_features
        return result

    def text(self) -> str:
        """The readable report: one PASS/FAIL line per check, then the verdict."""
        failed = [c for c in self.checks if not c.passed]
        lines = [c.line() for c in self.checks]
        if self.drifted_features:
            lines.append(f"Drifted features: {', '.join(self.drifted_features)}")
        verdict = "PASSED" if self.passed else f"FAILED ({len(failed)} of {len(self.checks)})"
        lines.append(f"RESULT: {verdict} (p = {self.p_value:.3f}, false-alarm level "
                     f"{self.alpha:g})")
        return "\n".join(lines)


class FeatureSpace:
    """One-hot categories and standardised numbers, with the fit rows' means and spreads."""

    def __init__(self, fit: dict[str, np.ndarray]):
        self.means = {f.name: float(np.mean(fit[f.name])) for f in data.SCHEMA.numeric}
        # A constant column would divide by zero; its spread counts as one unit instead.
        self.stds = {f.name: float(np.std(fit[f.name])) or 1.0 for f in data.SCHEMA.numeric}

    @property
    def width(self) -> int:
        """The number of encoded columns."""
        return (sum(len(f.categories) for f in data.SCHEMA.categorical)
                + len(data.SCHEMA.numeric))

    def standardised(self, columns: dict[str, np.ndarray], name: str) -> np.ndarray:
        """A numeric feature in standard deviations from the fit rows' mean."""
        return (np.asarray(columns[name], dtype=float) - self.means[name]) / self.stds[name]

    def encode(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The encoded matrix: one-hot blocks, then the standardised numbers."""
        blocks = []
        for feature in data.SCHEMA.features:
            if isinstance(feature, data.CategoricalFeature):
                blocks.append(np.eye(len(feature.categories))[columns[feature.name]])
            else:
                blocks.append(self.standardised(columns, feature.name)[:, None])
        return np.hstack(blocks)


def feature_columns(frame) -> dict[str, np.ndarray]:
    """Validated rows as arrays: category indices into the schema's categories, numbers."""
    columns = {}
    for feature in data.SCHEMA.features:
        values = frame[feature.name]
        if isinstance(feature, data.CategoricalFeature):
            index = {category: i for i, category in enumerate(feature.categories)}
            columns[feature.name] = np.fromiter((index[v] for v in values), dtype=np.int64,
                                                count=len(values))
        else:
            columns[feature.name] = np.asarray(values, dtype=float)
    return columns


def _take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[rows] for name, values in columns.items()}


class Baseline:
    """What production is compared with: the training rows, the envelope fitted on a part.

    ``reference`` holds the training rows that are compared (feature columns), ``outliers``
    and ``predictions`` what the envelope and the model say about them.
    """

    def __init__(self, training, predict=None, *, seed: int = SPLIT_SEED):
        # scikit-learn (and scipy with it) load only when there is something to check.
        from sklearn.covariance import EllipticEnvelope

        columns = feature_columns(training)
        n = len(training)
        order = np.random.default_rng(seed).permutation(n)
        n_fit = min(max(math.ceil(FIT_SHARE * n), 1), n - 1)
        fit, compared = order[:n_fit], np.sort(order[n_fit:][:MAX_REFERENCE_ROWS])
        self.training_rows = n
        self.space = FeatureSpace(_take(columns, fit))
        fit_matrix = self.space.encode(_take(columns, fit))
        # PCA to two dimensions: the leading right singular vectors of the centred matrix.
        self.center = fit_matrix.mean(axis=0)
        self.components = np.linalg.svd(fit_matrix - self.center, full_matrices=False)[2][:2]
        self.envelope = EllipticEnvelope(contamination=CONTAMINATION,
                                         random_state=seed).fit(self.project(fit_matrix))
        self.reference = _take(columns, compared)
        self.outliers = self.is_outlier(self.reference)
        self.predictions = (None if predict is None
                            else np.asarray(predict(training.iloc[compared]), dtype=float))

    @property
    def reference_rows(self) -> int:
        """The number of training rows production is compared with."""
        return len(self.outliers)

    def project(self, matrix: np.ndarray) -> np.ndarray:
        """Encoded rows in the two principal components of the fit rows."""
        return (matrix - self.center) @ self.components.T

    def is_outlier(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Whether each row falls outside the training envelope."""
        return self.envelope.predict(self.project(self.space.encode(columns))) == -1


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (sorted) and each value's index among them."""
    grid, codes = np.unique(values, return_inverse=True)
    return grid, codes.reshape(values.shape)


def _side_counts(codes: np.ndarray, k: int, sides: np.ndarray) -> np.ndarray:
    """(B, k) counts of each code among the rows of each relabelling's side."""
    block = codes[sides].reshape(len(sides), -1)
    offsets = (np.arange(len(sides)) * k)[:, None]
    return np.bincount((block + offsets).ravel(), minlength=len(sides) * k).reshape(-1, k)


def wasserstein(values: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the two sides of each relabelling of a pool.

    ``values`` is (N,) or (N, p) (pooled); each row of ``sides`` holds the pool indices of
    one side, the rest of the pool is the other. Both sides live on the pool's distinct
    values, so the distance is the area between the two step CDFs there: exact.
    """
    grid, codes = _codes(values)
    k = grid.size
    if k < 2:
        return np.zeros(len(sides))
    total = np.bincount(codes.ravel(), minlength=k)
    side = _side_counts(codes, k, sides)
    size = side.sum(axis=1, keepdims=True)
    rest_cdf = np.cumsum(total - side, axis=1) / (codes.size - size)
    side_cdf = np.cumsum(side, axis=1) / size
    return np.abs(side_cdf - rest_cdf)[:, :-1] @ np.diff(grid)


def total_variation(codes: np.ndarray, k: int, sides: np.ndarray) -> np.ndarray:
    """Total variation distance of category frequencies between the two sides of a pool."""
    total = np.bincount(codes, minlength=k)
    side = _side_counts(codes, k, sides)
    size = sides.shape[1]
    return 0.5 * np.abs(side / size - (total - side) / (len(codes) - size)).sum(axis=1)


def _relabellings(observed: np.ndarray, n_pool: int, n_permutations: int,
                  rng: np.random.Generator, chunk: int = 100):
    """The observed side's pool indices, then random sides of its size, in chunks."""
    yield observed[None, :]
    size = len(observed)
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        yield np.argpartition(rng.random((rows, n_pool)), size - 1, axis=1)[:, :size]


def _count_at_least(columns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each column j and each value v in ``values[:, j]``: #{rows i: columns[i, j] >= v}."""
    ordered = np.sort(columns, axis=0)
    counts = np.empty(values.shape, dtype=np.int64)
    for j in range(columns.shape[1]):
        counts[:, j] = len(columns) - np.searchsorted(ordered[:, j], values[:, j], side="left")
    return counts


def min_p_test(statistics: np.ndarray, alpha: float) -> dict:
    """The max-statistic (minP) permutation test over the columns of ``statistics``.

    Row 0 holds the observed statistics, the other rows those of random relabellings; large
    values speak against the null hypothesis. Returns the overall p-value, each check's raw
    and adjusted p-values, its threshold (it fails when its statistic exceeds it) and verdict.
    """
    statistics = np.round(statistics, DECIMALS)
    total = len(statistics)
    p_values = _count_at_least(statistics, statistics) / total
    min_p = np.sort(p_values.min(axis=1))
    observed = p_values[0]
    # How many labellings reach a minP as small as each check's own p-value: the check
    # fails when they are at most alpha's share of all of them (L = floor(alpha * total)),
    # that is when its p-value is under the (L+1)-th smallest minP.
    reached = np.searchsorted(min_p, observed, side="right")
    allowed = math.floor(alpha * total + 1e-9)
    cut = round(min_p[allowed] * total)  # fail when 1 + #{relabellings >= value} < cut
    relabelled = -np.sort(-statistics[1:], axis=0)  # descending, per check
    threshold = (relabelled[cut - 2] if cut >= 2
                 else np.full(statistics.shape[1], np.inf))
    return {
        "p_value": float(np.searchsorted(min_p, observed.min(), side="right") / total),
        "p_values": observed,
        "adjusted": reached / total,
        "thresholds": threshold,
        "passed": reached > allowed,
    }


def relabellings_for(alpha: float, n_checks: int) -> int:
    """How many relabellings a level needs: at least ``N_PERMUTATIONS``, and enough that a
    check can fail however the others fall (see ``compare``)."""
    return max(N_PERMUTATIONS, math.ceil((n_checks + 3) / alpha) - 1)


def compare(baseline: Baseline, production,
            predictions: np.ndarray | list[int] | None = None, *,
            model_version: str = "", production_rows: int | None = None,
            alpha: float = 0.01, n_permutations: int | None = None,
            seed: int | None = None) -> Report:
    """Test a production sample against the baseline; one ``Check`` per statistic.

    ``production`` holds validated rows (a DataFrame or a dict of columns), ``predictions``
    their predicted classes; ``production_rows`` is the size of the window it was sampled
    from. ``seed`` None draws fresh relabellings (the seed used is in the report);
    ``n_permutations`` None takes ``relabellings_for(alpha, ...)``.
    """
    has_y = baseline.predictions is not None and predictions is not None
    n_checks = 2 + has_y + len(data.SCHEMA.features)
    if n_permutations is None:
        n_permutations = relabellings_for(alpha, n_checks)
    # Each check's largest statistic may sit in a different relabelling, so the smallest
    # adjusted p-value can be n_checks / (n_permutations + 1): above alpha, nothing can fail.
    if (n_permutations + 1) * alpha < n_checks:
        raise ValueError(f"{n_permutations} relabellings cannot reach a p-value of {alpha:g} "
                         f"over {n_checks} checks")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63))  # fresh entropy from the OS
    rng = np.random.default_rng(seed)
    columns = (production if isinstance(production, dict) else feature_columns(production))
    m = len(next(iter(columns.values())))
    pooled = {name: np.concatenate([baseline.reference[name], columns[name]])
              for name in columns}
    n_pool = baseline.reference_rows + m
    outliers = np.concatenate([baseline.outliers, baseline.is_outlier(columns)])
    # Every row puts the same mass on 0 and 1 in its one-hot blocks, so those cancel out of
    # the pooled CDFs: the distance of all encoded features is the distance of the numbers
    # alone, scaled by their share of the encoded columns. Exact, and far fewer values.
    numbers = np.column_stack([baseline.space.standardised(pooled, f.name)
                               for f in data.SCHEMA.numeric])
    share = numbers.shape[1] / baseline.space.width
    if has_y:
        classes = np.concatenate([baseline.predictions, np.asarray(predictions, dtype=float)])
    checks: list[tuple[str, str, str | None]] = [
        ("OUTLIER TEST", "% of rows outside the training envelope", None),
        ("X WASSERSTEIN TEST", "distance of the encoded features, pooled", None)]
    if has_y:
        checks.append(("Y WASSERSTEIN TEST", "distance of the predicted classes", None))
    for feature in data.SCHEMA.features:
        checks.append((f"FEATURE {feature.name}",
                       "distance of the category frequencies"
                       if isinstance(feature, data.CategoricalFeature) else
                       "Wasserstein distance in training standard deviations", feature.name))

    # Every statistic is symmetric in the two sides but the outlier share, so the relabelled
    # side is the smaller sample: counting its rows costs the least.
    n_reference = baseline.reference_rows
    production_side = m <= n_reference
    observed = np.arange(n_reference, n_pool) if production_side else np.arange(n_reference)

    def statistics(sides: np.ndarray) -> np.ndarray:
        flagged = outliers[sides].sum(axis=1)
        if not production_side:
            flagged = outliers.sum() - flagged
        row = [100 * flagged / m, share * wasserstein(numbers, sides)]
        if has_y:
            row.append(wasserstein(classes, sides))
        for feature in data.SCHEMA.features:
            if isinstance(feature, data.CategoricalFeature):
                row.append(total_variation(pooled[feature.name], len(feature.categories),
                                           sides))
            else:
                row.append(wasserstein(baseline.space.standardised(pooled, feature.name),
                                       sides))
        return np.column_stack(row)

    table = np.vstack([statistics(sides)
                       for sides in _relabellings(observed, n_pool, n_permutations, rng)])
    test = min_p_test(table, alpha)
    return Report(
        model_version=model_version, training_rows=baseline.training_rows,
        reference_rows=baseline.reference_rows,
        production_rows=m if production_rows is None else production_rows, sample_rows=m,
        n_permutations=n_permutations, alpha=alpha, p_value=test["p_value"], seed=seed,
        checks=[Check(name, float(table[0, i]), float(test["thresholds"][i]),
                      float(test["p_values"][i]), float(test["adjusted"][i]),
                      bool(test["passed"][i]), description, feature)
                for i, (name, description, feature) in enumerate(checks)],
    )


def _window_records(settings: Settings, *, test_mode: bool, since: str):
    """The predict log's records from ``since`` on, streamed: older months are not opened,
    older lines are not parsed, so the cost of a run follows the window, not the history."""
    try:
        for path in logs.log_files(settings.log_dir, "predict", test_mode=test_mode,
                                   since=since):
            yield from logs.iter_records(path, since=since)
    except logs.LogFormatError as error:
        raise NothingToMonitor(f"the predict log cannot be read: {error}") from None


def production_sample(settings: Settings, *, version: str, test_mode: bool = False,
                      days: float | None = 30, max_rows: int | None = None,
                      seed: int | None = None):
    """The logged inputs and predicted classes of ``version`` from the last ``days`` days.

    Returns the validated rows (a DataFrame), their predicted classes and the number of rows
    in the window; a window larger than ``max_rows`` is sampled uniformly as it is read
    (reservoir sampling), so memory stays bounded. Raises ``NothingToMonitor`` when there are
    no predict logs, no rows of the version in the window, or rows logged without inputs.
    """
    files = logs.log_files(settings.log_dir, "predict", test_mode=test_mode)
    if not files:
        raise NothingToMonitor(f"no predict logs in {settings.log_dir}: nothing was predicted "
                               "yet, so there is no production data to check")
    # The logs' own format (microseconds always written), so that strings compare as times.
    since = ((datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="microseconds")
             if days else "")
    max_rows = MAX_ROWS if max_rows is None else max_rows
    rng = np.random.default_rng(seed)
    kept: list[dict] = []
    seen = without_input = 0
    for record in _window_records(settings, test_mode=test_mode, since=since):
        if record.get("model_version") != version or str(record.get("timestamp", "")) < since:
            continue
        seen += 1
        if not isinstance(record.get("input"), dict):
            without_input += 1
        elif len(kept) < max_rows:
            kept.append(record)
        else:  # Algorithm R: the row replaces a kept one with probability max_rows / seen
            slot = rng.integers(seen)
            if slot < max_rows:
                kept[slot] = record
    window = f"in the last {days:g} days" if days else "in the logs"
    if not seen:
        raise NothingToMonitor(f"no predictions of model version {version} {window} "
                               f"({len(files)} log files)")
    if without_input:
        raise NothingToMonitor(
            f"{without_input} of {seen} logged predictions {window} have no "
            "input: inputs are logged only while MODEL_LOG_INPUTS is true")
    try:
        frame = data.validate_records([r["input"] for r in kept])
    except data.DataValidationError as error:
        raise NothingToMonitor(f"the logged inputs do not match the schema: {error}") from None
    predictions = np.array([r.get("prediction", -1) for r in kept], dtype=float)
    return frame, predictions, seen


def load_baseline(settings: Settings, loaded: scoring.LoadedModel, *,
                  test_mode: bool = False) -> Baseline:
    """The baseline of the served model: its archived training data and its predictions."""
    training = Registry(settings.registry_dir).training_data(artifact_name(test_mode),
                                                             loaded.version)
    features = training[data.FEATURES]
    return Baseline(features, lambda rows: scoring.classify(
        loaded.positive_probability(rows).tolist()))


def plot(baseline: Baseline, production, report: Report, path: Path) -> Path | None:
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
    train_xy = baseline.project(baseline.space.encode(baseline.reference))
    prod_xy = baseline.project(baseline.space.encode(feature_columns(production)))
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
    ratios = [c.value / c.threshold if 0 < c.threshold < np.inf else float(not c.passed)
              for c in features]
    bars.barh([c.feature for c in features], ratios,
              color=["tab:green" if c.passed else "tab:red" for c in features])
    bars.axvline(1.0, color="black", linestyle="--", linewidth=1)
    bars.set(xlabel="distance / threshold (over 1 = drifted)", title="Drift per feature")
    verdict = "PASSED" if report.passed else "FAILED"
    figure.suptitle(f"Model {report.model_version}: drift check {verdict} at level "
                    f"{report.alpha:g} ({report.sample_rows} production rows, "
                    f"{report.reference_rows} training)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def run_monitor(settings: Settings, *, test_mode: bool = False, days: float | None = 30,
                report_dir: Path | None = None, n_permutations: int | None = None,
                seed: int | None = None) -> int:
    """Check the logged traffic of the configured version; print, write JSON and PNG.

    Returns 0 when the check passed, 1 when it found drift, 3 when there is nothing to
    check, 4 when the window holds fewer rows than ``settings.monitor_min_rows``.
    """
    try:
        # The model as the service serves it (its verified scoring spec when it has one).
        loaded = loading.load_model(settings, test_mode=test_mode)
        production, predictions, total = production_sample(
            settings, version=loaded.version, test_mode=test_mode, days=days, seed=seed)
        if total < settings.monitor_min_rows:
            raise NotEnoughData(
                f"{total} logged rows of model version {loaded.version} in the window; a "
                f"verdict needs at least {settings.monitor_min_rows} (MODEL_MONITOR_MIN_ROWS)")
    except (NothingToMonitor, ModelNotFoundError) as error:
        print(f"nothing to monitor: {error}", file=sys.stderr)
        return EXIT_NOTHING_TO_MONITOR
    except NotEnoughData as error:
        print(f"not enough data: {error}", file=sys.stderr)
        return EXIT_NOT_ENOUGH_DATA
    baseline = load_baseline(settings, loaded, test_mode=test_mode)
    report = compare(baseline, production, predictions, model_version=loaded.version,
                     production_rows=total, alpha=settings.monitor_alpha,
                     n_permutations=n_permutations, seed=seed)
    report_dir = Path(report_dir) if report_dir is not None else settings.log_dir / "monitoring"
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem = f"monitor{'-test' if test_mode else ''}-{loaded.version}-{stamp}"
    image = plot(baseline, production, report, report_dir / f"{stem}.png")
    document = report_dir / f"{stem}.json"
    document.write_bytes(orjson.dumps({**report.to_dict(), "plot": str(image) if image else None},
                                      option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    sampled = (f", a sample of {report.sample_rows}"
               if report.sample_rows < report.production_rows else "")
    print(f"Drift check of model {loaded.version}: {report.production_rows} logged rows"
          f"{sampled} against {report.reference_rows} training rows; two-sample permutation "
          f"test ({report.n_permutations} relabellings, seed {report.seed}), false-alarm "
          f"level {report.alpha:g} over all checks")
    print(report.text())
    print(f"Report: {document}")
    print(f"Plot: {image}" if image else
          "Plot: not drawn; matplotlib is not installed (the project's `plots` extra, which "
          "`make install` includes)")
    return EXIT_PASSED if report.passed else EXIT_FAILED
