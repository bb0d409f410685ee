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
- per feature: the Wasserstein distance in training standard deviations (numbers) or
  Pearson's chi-square statistic of the category counts (categories), to say what moved.
  Chi-square weighs a change in a category's share by that share (a move from 20 % to 30 % is
  more surprising than one from 50 % to 60 %), which is how sampling error scales; with two
  categories it orders the relabellings as the difference in shares does.

Why a permutation test. The null hypothesis is "the production rows and the reference rows
are draws from one distribution". Under it, which of the pooled rows were logged in
production is a random labelling, so the statistics of randomly relabelled pools are the
statistics' null distribution: the sampling error of *both* samples is accounted for, at
every sample size, with no distributional assumption. The pool's labelling is drawn afresh
on every run (the seed goes into the report): a p-value from B random relabellings plus the
observed one is exact, ``P(p <= alpha) <= alpha`` (Phipson & Smyth 2010, "Permutation
p-values should never be zero").

Why 4,999 relabellings (``N_PERMUTATIONS``). A check fails when its p-value is under the
``alpha`` quantile of the relabellings' smallest p-values, an order statistic that is noisy
when the relabellings are few (at 999 and level 1 %, about the tenth smallest of 1,000):
the level stays exact, but shifts near the limit are caught less often. Measured on two
sets of 300 windows of 200 rows (the calibration benchmark's shifts), the same windows for
each number: a country mix change was caught in 79 and 79 % of them with 999 relabellings,
84 and 85 % with 4,999, 86 and 86 % with 9,999; a plan mix change in 90 and 85 %, 92 and
88 %, 92 and 89 %. Each relabelling costs in proportion to the smaller sample
(``PooledChecks``, ``random_subsets``): 4,999 take less time at 200 rows than 999 used to,
about a second at 2,000 rows (three times as long), and 9,999 twice that.

One decision over correlated checks: each check's p-value is adjusted by the distribution
of the smallest p-value over all checks in the same relabellings (Westfall & Young's
single-step minP), so the overall verdict (some check fails) has the stated level, and a
check's threshold is the value it must exceed to fail. Ties count against the production
sample (``>=``), which keeps discrete statistics conservative.

The envelope and the standardisation are fitted on a fixed quarter of the training rows (at
most 500) and the rest is the reference sample: rows an envelope was fitted on fall outside it
less often than new rows, and a test that compared them with production would call that drift.

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
N_PERMUTATIONS = 4999
CONTAMINATION = 0.01
# The share of the training rows the envelope and the standardisation are fitted on, at most
# MAX_FIT_ROWS of them. The envelope is a minimum covariance determinant in two dimensions,
# which 500 rows determine well; scikit-learn's FastMCD also switches to a much slower
# subset search above 500 rows (sklearn/covariance/_robust_covariance.py, fast_mcd).
FIT_SHARE = 0.25
MAX_FIT_ROWS = 500
# Larger windows are checked on a uniform random sample; its size bounds memory and time.
MAX_ROWS = 2000
# A larger training set is compared through a fixed sample of its rows: the test's power is
# bounded by the smaller sample, and each relabelling costs time in proportion to the pool.
MAX_REFERENCE_ROWS = 10_000
SPLIT_SEED = 0
# Statistics are compared after rounding: the same distance reached by two relabellings must
# tie, whatever the floating-point order of its sums.
DECIMALS = 10
# The relabellings' statistics are computed in chunks of about this many looked-up codes.
CHUNK_CELLS = 1_000_000
# Columns with few distinct values are counted jointly, in groups of at most this share of
# the relabelled side's size combinations.
JOINT_SHARE = 0.25
# The sampler of relabellings marks its draws in work arrays of about this many entries.
SUBSET_CELLS = 1 << 18


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
        n_fit = min(max(math.ceil(FIT_SHARE * n), 1), MAX_FIT_ROWS, n - 1)
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


def _wasserstein_of_counts(side: np.ndarray, total: np.ndarray,
                           steps: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between a side and the rest of a pool, from the side's (B, k)
    counts on the pool's distinct values, the pool's counts and the steps between values:
    the area between the two step CDFs."""
    size = side.sum(axis=1, keepdims=True)
    rest_cdf = np.cumsum(total - side, axis=1) / (total.sum() - size)
    side_cdf = np.cumsum(side, axis=1) / size
    return np.abs(side_cdf - rest_cdf)[:, :-1] @ steps


def _chi_square_of_counts(side: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Pearson's chi-square statistic of the 2 x k table (side, rest) x category, from the
    side's (B, k) counts and the pool's; categories absent from the pool have no cell."""
    n, size = total.sum(), side.sum(axis=1)
    present = total > 0
    # Both rows of a column deviate from their expected counts by the same amount d, so the
    # column adds d^2 / E_side + d^2 / E_rest = d^2 * n^2 / (total * size * (n - size)).
    deviation = side[:, present] - np.outer(size, total[present]) / n
    return (deviation ** 2 / total[present]).sum(axis=1) * n * n / (size * (n - size))


def wasserstein(values: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the two sides of each relabelling of a pool.

    ``values`` is (N,) or (N, p) (pooled); each row of ``sides`` holds the pool indices of
    one side, the rest of the pool is the other. Both sides live on the pool's distinct
    values, so the distance is the area between the two step CDFs there: exact.
    """
    grid, codes = _codes(values)
    total = np.bincount(codes.ravel(), minlength=grid.size)
    return _wasserstein_of_counts(_side_counts(codes, grid.size, sides), total, np.diff(grid))


def chi_square(codes: np.ndarray, k: int, sides: np.ndarray) -> np.ndarray:
    """Pearson's chi-square statistic of the 2 x k table (side, rest) x category, for each
    relabelling of a pool of category codes."""
    return _chi_square_of_counts(_side_counts(codes, k, sides), np.bincount(codes, minlength=k))


def random_subsets(rng: np.random.Generator, n: int, size: int, rows: int,
                   scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(rows, size) indices: each row a uniformly random ``size``-subset of ``range(n)``.

    Each row keeps the first ``size`` distinct values of a stream of independent uniform
    draws, so the set is uniform over the subsets: relabelling the values changes neither
    the stream's distribution nor which draws are kept. Rows are filled in rounds, each
    drawing as many values as a row still lacks, so the cost follows ``rows * size`` (about
    ``rows * size * (1 + size / n)`` draws), not ``rows * n``. ``scratch`` holds the work
    arrays (``subset_scratch``), to reuse between calls; rows are filled as many at a time
    as it has room for.
    """
    taken, owner = scratch if scratch is not None else subset_scratch(n, rows)
    block = max(1, len(taken) // n)
    sides = rng.integers(n, size=(rows, size))
    for first in range(0, rows, block):
        _distinct(rng, n, sides[first:first + block], taken, owner)
    return sides


def _distinct(rng: np.random.Generator, n: int, sides: np.ndarray, taken: np.ndarray,
              owner: np.ndarray) -> None:
    """Redraw repeated values of each row of ``sides`` in place until they are distinct.

    A value ``v`` of row ``r`` has the key ``r * n + v``; ``taken`` (all False on entry and
    on return) marks the keys kept so far, ``owner`` which draw wrote a key last.
    """
    rows, size = sides.shape
    flat = sides.reshape(-1)  # a view: writes go to ``sides``
    keys = (sides + (np.arange(rows) * n)[:, None]).reshape(-1)
    pending = np.arange(rows * size)
    # Of the draws of one value in a round, exactly one is kept (whichever wrote its key
    # last): which one does not change the set. Nothing is taken before the first round.
    owner[keys] = pending
    kept = owner[keys] == pending
    taken[keys] = True
    while True:
        pending = pending[~kept]
        if not pending.size:
            break
        flat[pending] = rng.integers(n, size=pending.size)
        keys = pending // size * n + flat[pending]
        owner[keys] = pending
        kept = ~taken[keys] & (owner[keys] == pending)
        taken[keys[kept]] = True
    taken[(sides + (np.arange(rows) * n)[:, None]).reshape(-1)] = False


def subset_scratch(n: int, rows: int, cells: int = SUBSET_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """The work arrays of ``random_subsets``: room for ``rows`` subsets of ``range(n)`` at a
    time, but at most about ``cells`` keys, small enough to stay in the processor's cache."""
    room = min(rows, max(1, cells // n)) * n
    return np.zeros(room, dtype=bool), np.zeros(room, dtype=np.intp)


class PooledChecks:
    """The checks' statistics for relabellings of one pool: the reference rows, then the
    production rows.

    Each check's statistic is a function of how many rows of one side hold each of the
    pool's distinct values of one column (outlier flag, predicted class, a feature's
    categories or numbers; the pooled X distance adds up the numbers' counts), so a
    relabelling costs a look-up and a count of its side's rows only: in proportion to the
    side's size, not the pool's. Columns with few distinct values are counted jointly (one
    code per combination), and each column's counts are sums of the joint ones, which makes
    the look-ups fewer. Every statistic is symmetric in the two sides but the outlier share,
    so the relabelled side is the smaller sample.
    """

    def __init__(self, baseline: Baseline, columns: dict[str, np.ndarray],
                 predictions: np.ndarray | list[int] | None = None):
        m = len(next(iter(columns.values())))
        n_reference = baseline.reference_rows
        self.production_rows, self.n_pool = m, n_reference + m
        self.production_side = m <= n_reference
        self.observed = (np.arange(n_reference, self.n_pool) if self.production_side
                         else np.arange(n_reference))
        pooled = {name: np.concatenate([baseline.reference[name], columns[name]])
                  for name in columns}
        self._columns: list[tuple[np.ndarray, int]] = []  # each column's codes and count
        self.checks: list[tuple[str, str, str | None]] = []
        self._statistics: list = []  # each check's statistic of the columns' side counts

        def add(name, description, feature, statistic):
            self.checks.append((name, description, feature))
            self._statistics.append(statistic)

        outliers = np.concatenate([baseline.outliers, baseline.is_outlier(columns)])
        flag, total_flagged = self._column(outliers.astype(np.intp), 2), int(outliers.sum())

        def outlier_share(counts):
            flagged = counts[flag][:, 1]
            return 100 * (flagged if self.production_side else total_flagged - flagged) / m

        add("OUTLIER TEST", "% of rows outside the training envelope", None, outlier_share)
        # Every row puts the same mass on 0 and 1 in its one-hot blocks, so those cancel out
        # of the pooled CDFs: the distance of all encoded features is the distance of the
        # numbers alone (all of them on one grid), scaled by their share of the encoded
        # columns. Exact, and far fewer values.
        numbers = {f.name: _codes(baseline.space.standardised(pooled, f.name))
                   for f in data.SCHEMA.numeric}
        grid = np.unique(np.concatenate([values for values, _ in numbers.values()]))
        onto = {name: (self._column(codes, values.size), np.searchsorted(grid, values))
                for name, (values, codes) in numbers.items()}
        total = np.bincount(np.concatenate([
            places[codes] for (_, codes), (_, places) in zip(numbers.values(), onto.values())]),
            minlength=grid.size)
        steps, share = np.diff(grid), len(numbers) / baseline.space.width

        def pooled_distance(counts):
            side = np.zeros((len(counts[0]), grid.size), dtype=np.int64)
            for column, places in onto.values():
                side[:, places] += counts[column]
            return share * _wasserstein_of_counts(side, total, steps)

        add("X WASSERSTEIN TEST", "distance of the encoded features, pooled", None,
            pooled_distance)
        if baseline.predictions is not None and predictions is not None:
            add("Y WASSERSTEIN TEST", "distance of the predicted classes", None,
                self._distance(*_codes(np.concatenate(
                    [baseline.predictions, np.asarray(predictions, dtype=float)]))))
        for feature in data.SCHEMA.features:
            name = f"FEATURE {feature.name}"
            if isinstance(feature, data.CategoricalFeature):
                codes, k = pooled[feature.name], len(feature.categories)
                add(name, "chi-square statistic of the category counts", feature.name,
                    lambda counts, column=self._column(codes, k),
                    total=np.bincount(codes, minlength=k):
                    _chi_square_of_counts(counts[column], total))
            else:
                values, codes = numbers[feature.name]
                add(name, "Wasserstein distance in training standard deviations",
                    feature.name, self._distance(values, codes, onto[feature.name][0]))
        self._groups = self._joint_groups(len(self.observed))

    def _column(self, codes: np.ndarray, k: int) -> int:
        """Register a column of codes in ``range(k)``; its index."""
        self._columns.append((codes, k))
        return len(self._columns) - 1

    def _distance(self, values: np.ndarray, codes: np.ndarray, column: int | None = None):
        """The Wasserstein statistic of a column of ``codes`` into the sorted ``values``."""
        if column is None:
            column = self._column(codes, values.size)
        total, steps = np.bincount(codes, minlength=values.size), np.diff(values)
        return lambda counts: _wasserstein_of_counts(counts[column], total, steps)

    def _joint_groups(self, size: int):
        """Consecutive columns joined while their combinations stay under a share of the
        side's size (``size * JOINT_SHARE``): a joint code saves a look-up per side row and
        costs a sum over its combinations per column. Each group's joint codes (mixed
        radix), its columns and their numbers of codes."""
        groups: list[list[int]] = []
        members: list[int] = []
        k = 1
        for index, (_, count) in enumerate(self._columns):
            if members and k * count > size * JOINT_SHARE:
                groups.append(members)
                members, k = [], 1
            members.append(index)
            k *= count
        groups.append(members)
        joint = []
        for members in groups:
            shape = [self._columns[index][1] for index in members]
            codes = np.ravel_multi_index([self._columns[index][0] for index in members], shape)
            # Column i's count of code d: the sum of the joint counts whose i-th digit is d.
            axes = [(index, math.prod(shape[:i]), count, math.prod(shape[i + 1:]))
                    for i, (index, count) in enumerate(zip(members, shape))]
            joint.append((codes, math.prod(shape), axes))
        return joint

    def statistics(self, sides: np.ndarray) -> np.ndarray:
        """(B, checks) statistics of the relabellings whose sides are the rows of ``sides``
        (pool indices of ``len(self.observed)`` rows each)."""
        rows = len(sides)
        counts: list[np.ndarray] = [np.empty(0)] * len(self._columns)
        for codes, k, axes in self._groups:
            keys = codes[sides] + (np.arange(rows) * k)[:, None]
            joint = np.bincount(keys.ravel(), minlength=rows * k)
            for index, before, count, after in axes:
                counts[index] = joint.reshape(rows, before, count, after).sum(axis=(1, 3))
        return np.column_stack([statistic(counts) for statistic in self._statistics])

    def table(self, n_permutations: int, rng: np.random.Generator,
              cells: int = CHUNK_CELLS) -> np.ndarray:
        """The observed statistics (row 0), then those of ``n_permutations`` random
        relabellings, in chunks of about ``cells`` looked-up codes or joint counts, which
        bounds a run's memory whatever the number of relabellings."""
        size = len(self.observed)
        width = max(size * len(self._groups),
                    max(k for _, k, _ in self._groups))
        chunk = max(1, cells // width)
        scratch = subset_scratch(self.n_pool, chunk)
        parts = [self.statistics(self.observed[None, :])]
        for start in range(0, n_permutations, chunk):
            rows = min(chunk, n_permutations - start)
            parts.append(self.statistics(random_subsets(rng, self.n_pool, size, rows,
                                                        scratch)))
        return np.vstack(parts)


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


def check_count(with_predictions: bool) -> int:
    """How many checks ``compare`` runs: the outlier share, the pooled X distance, the
    predicted classes' distance when there are predictions, and one per feature."""
    return 2 + with_predictions + len(data.SCHEMA.features)


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
    n_checks = check_count(baseline.predictions is not None and predictions is not None)
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
    pool = PooledChecks(baseline, columns, predictions)
    table = pool.table(n_permutations, rng)
    test = min_p_test(table, alpha)
    return Report(
        model_version=model_version, training_rows=baseline.training_rows,
        reference_rows=baseline.reference_rows,
        production_rows=(pool.production_rows if production_rows is None
                         else production_rows), sample_rows=pool.production_rows,
        n_permutations=n_permutations, alpha=alpha, p_value=test["p_value"], seed=seed,
        checks=[Check(name, float(table[0, i]), float(test["thresholds"][i]),
                      float(test["p_values"][i]), float(test["adjusted"][i]),
                      bool(test["passed"][i]), description, feature)
                for i, (name, description, feature) in enumerate(pool.checks)],
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
