"""Scoring and prediction with numpy alone: the spec scorer, the loaded model, ``predict``.

Training writes, next to the skops pipeline, a plain-JSON scoring spec when numpy alone can
score the pipeline (one-hot encoding, standardisation, a binary logistic regression): the
encoders' category columns and scaler statistics, the coefficients and the intercept.
``NumpyScorer`` scores rows from that spec; ``LoadedModel`` is a loaded model version (what
``loading.load_model`` returns); ``predict`` validates, scores and logs every row.

This module imports numpy and the package's own light modules only (the service, ``predict``
and the monitor score with it); a test of the package's import graph keeps it that way.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import data as dataset
from . import logs
from .config import Settings

logger = logging.getLogger(__name__)

# The version of the spec's layout: a loader refuses a spec written in a layout it does not know.
SPEC_FORMAT = 1
LOGISTIC = "logistic_regression"
# Requests of up to this many rows are scored in plain Python (NumpyScorer.row_probabilities):
# below it numpy's per-call costs are more than the rows' arithmetic.
PLAIN_ROWS = 64
# The most two ways of scoring one model may differ by (a probability).
AGREEMENT = 1e-9


class SpecError(ValueError):
    """A scoring spec is malformed or does not match the schema."""


def _number(value, what: str) -> float:
    """``value`` as a finite float, or a ``SpecError`` naming ``what``."""
    try:
        number = float(value) if isinstance(value, (int, float)) else math.nan
    except OverflowError:  # an integer too large for a float
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise SpecError(f"{what} must be a finite number, got {str(value)[:40]}")
    return number


class NumpyScorer:
    """The positive-class probability of a scoring spec's model, computed with numpy.

    ``spec`` is the JSON-ready dict ``pipeline_scoring.scoring_spec`` derives from a fitted
    pipeline. Without a ``"classifier"`` in the spec, ``classifier`` (a fitted scikit-learn
    estimator) scores the encoded matrix instead; the service never needs that,
    ``pipeline_scoring`` does for a forest. Raises ``SpecError`` for a spec that is malformed
    or does not fit the schema.
    """

    def __init__(self, spec: dict, classifier=None):
        if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
            raise SpecError(f"expected a spec of format {SPEC_FORMAT}")
        if spec.get("features") != dataset.FEATURES:
            raise SpecError(f"features must be {dataset.FEATURES}, got {spec.get('features')!r}")
        if spec.get("classes") != list(dataset.SCHEMA.classes):
            raise SpecError(f"classes must be {list(dataset.SCHEMA.classes)}")
        width = spec.get("width")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise SpecError(f"width must be a positive integer, got {width!r}")
        self.width = width
        if not isinstance(spec.get("encoders"), list):
            raise SpecError("encoders must be a list")
        self._encoders = [self._encoder(item) for item in spec["encoders"]]
        encoded = sorted(column for _, _, columns, _ in self._encoders for column in columns)
        # The length first: a huge width is refused before any list of that size is made.
        if len(encoded) != width or encoded != list(range(width)):
            raise SpecError(f"the encoders must fill the {width} columns exactly once")
        self._check_categories()
        self._classifier = classifier
        model = spec.get("classifier")
        if model is None:
            if classifier is None:
                raise SpecError("the spec has no classifier to score with")
            return
        if not isinstance(model, dict) or model.get("kind") != LOGISTIC:
            raise SpecError(f"unsupported classifier {model!r}")
        coef = model.get("coef")
        if not isinstance(coef, list) or len(coef) != width:
            raise SpecError(f"coef must be a list of {width} numbers")
        self._coef = np.array([_number(c, "coef") for c in coef])
        self._intercept = _number(model.get("intercept"), "intercept")
        self._check_bounded()

    def _check_bounded(self) -> None:
        """Every record the schema accepts gets a finite score, or ``SpecError``.

        The score is a sum of one term per feature; each numeric term is linear in its value,
        so its largest size over the schema's range is at one of the range's ends. A finite
        bound on the sum of the largest terms proves that no valid record can produce an
        infinite or undefined probability (which would otherwise pass the one-record
        self-check and then answer some requests with null).
        """
        ranges = {f.name: (f.minimum, f.maximum) for f in dataset.SCHEMA.numeric}
        largest = [abs(self._intercept)]
        with np.errstate(over="ignore", invalid="ignore"):
            for kind, feature, columns, params in self._encoders:
                if kind == "one_hot":
                    largest.append(float(np.max(np.abs(self._coef[columns]))))
                else:
                    column, mean, scale = params
                    ends = (np.array(ranges[feature], dtype=float) - mean) / scale
                    largest.append(float(np.max(np.abs(self._coef[column] * ends))))
            bound = float(np.sum(largest))
        if not math.isfinite(bound):
            raise SpecError("the spec's numbers give no finite score for some valid records")

    def _encoder(self, item) -> tuple:
        """One encoder as (kind, feature, columns it fills, parameters), checked."""
        if not isinstance(item, dict) or item.get("feature") not in dataset.FEATURES:
            raise SpecError(f"an encoder must name a feature, got {item!r}")
        feature, kind = item["feature"], item.get("kind")
        if kind == "one_hot":
            index = item.get("columns")
            if not isinstance(index, dict) or not all(
                    isinstance(c, int) and not isinstance(c, bool) for c in index.values()):
                raise SpecError(f"{feature}: columns must map each category to a column")
            return kind, feature, list(index.values()), index
        if kind == "standardize":
            column = item.get("column")
            if isinstance(column, bool) or not isinstance(column, int):
                raise SpecError(f"{feature}: column must be an integer")
            mean = _number(item.get("mean"), f"{feature}: mean")
            scale = _number(item.get("scale"), f"{feature}: scale")
            if scale == 0:
                raise SpecError(f"{feature}: scale must not be zero")
            return kind, feature, [column], (column, mean, scale)
        raise SpecError(f"{feature}: unsupported encoder kind {kind!r}")

    def _check_categories(self) -> None:
        """Every value the schema allows has a column, so a validated row always encodes."""
        kinds = {feature: (kind, params) for kind, feature, _, params in self._encoders}
        if len(kinds) != len(self._encoders):
            raise SpecError("a feature is encoded twice")
        for feature in dataset.SCHEMA.features:
            kind, params = kinds.get(feature.name, (None, None))
            if isinstance(feature, dataset.CategoricalFeature):
                if kind != "one_hot" or not set(feature.categories) <= params.keys():
                    raise SpecError(f"{feature.name}: every category needs a one-hot column")
            elif kind != "standardize":
                raise SpecError(f"{feature.name}: a numeric feature needs standardizing")

    def encode(self, columns: dict) -> np.ndarray:
        """The preprocessed matrix of rows given as a mapping of column name to values."""
        n_rows = len(next(iter(columns.values())))
        matrix = np.zeros((n_rows, self.width))
        rows = np.arange(n_rows)
        for kind, feature, _, params in self._encoders:
            values = columns[feature]
            if kind == "one_hot":
                matrix[rows, [params[value] for value in values]] = 1.0
            else:
                column, mean, scale = params
                matrix[:, column] = (np.asarray(values, dtype=float) - mean) / scale
        return matrix

    def positive_probability(self, columns: dict) -> np.ndarray:
        """P(class 1) for each row."""
        matrix = self.encode(columns)
        if self._classifier is not None:
            return self._classifier.predict_proba(matrix)[:, 1]
        return 1.0 / (1.0 + np.exp(-(matrix @ self._coef + self._intercept)))

    @property
    def scores_rows(self) -> bool:
        """Whether ``row_probabilities`` can score (the spec has the classifier)."""
        return self._classifier is None

    def row_probabilities(self, rows: list) -> list[float]:
        """P(class 1) of each validated row (a dict), in plain Python.

        The same model as ``positive_probability``, folded into one term per feature: a
        category's coefficient, or ``value * coef / scale - mean * coef / scale``. For a few
        rows this is several times faster than building a matrix (numpy's per-call costs
        dominate there); the pipeline agreement check covers both. Needs the spec's classifier.
        """
        categories, numeric = self._terms
        probabilities = []
        for row in rows:
            score = self._intercept
            for feature, contribution in categories:
                score += contribution[row[feature]]
            for feature, mean, slope in numeric:
                score += (row[feature] - mean) * slope
            # exp of a negative number only: no overflow for a very large |score|.
            if score >= 0:
                probabilities.append(1.0 / (1.0 + math.exp(-score)))
            else:
                odds = math.exp(score)
                probabilities.append(odds / (1.0 + odds))
        return probabilities

    @functools.cached_property
    def _terms(self) -> tuple[list, list]:
        if self._classifier is not None:
            raise TypeError("a scorer with a fitted classifier scores with positive_probability")
        coef = self._coef.tolist()
        categories, numeric = [], []
        for kind, feature, _, params in self._encoders:
            if kind == "one_hot":
                categories.append((feature, {value: coef[column]
                                             for value, column in params.items()}))
            else:
                column, mean, scale = params
                numeric.append((feature, mean, coef[column] / scale))
        return categories, numeric


class Prediction(NamedTuple):
    """Labels and positive-class probabilities of the predicted rows, with the model version.

    A named tuple: one is made per request, and a frozen dataclass costs several times more
    to make.
    """

    labels: list[int]
    probabilities: list[float]
    model_version: str
    request_id: str
    runtime: float = 0.0  # seconds the model took, for the log (a batch's rows share it)

    def to_dict(self) -> dict:
        """A JSON-ready view of the prediction."""
        return {
            "request_id": self.request_id,
            "model_version": self.model_version,
            "predictions": self.labels,
            "probabilities": self.probabilities,
        }


@dataclass
class LoadedModel:
    """A loaded, verified model version ready to predict.

    ``scorer`` scores rows with numpy; without one, ``pipeline`` (a fitted scikit-learn
    pipeline) does. A model loaded from its scoring spec has no pipeline.
    """

    # A fitted scikit-learn pipeline or None; typed Any, as this module never imports sklearn.
    pipeline: Any
    metadata: dict
    name: str
    version: str
    path: Path | None
    scorer: NumpyScorer | None = field(default=None, repr=False)

    def positive_probability(self, records) -> np.ndarray:
        """P(class 1) of validated records: a list of dicts or a DataFrame in schema order."""
        if dataset.is_frame(records):
            if self.scorer is None:
                return self.pipeline.predict_proba(records)[:, 1]
            return self.scorer.positive_probability(
                {c: records[c].to_numpy() for c in dataset.FEATURES}
            )
        if self.scorer is None:
            return self.pipeline.predict_proba(dataset.rows_to_frame(records))[:, 1]
        return self.scorer.positive_probability(
            {c: [row[c] for row in records] for c in dataset.FEATURES}
        )

    def probabilities(self, rows: list) -> list[float]:
        """P(class 1) of validated rows (dicts), as floats: what the service predicts with.

        Up to ``PLAIN_ROWS`` rows are scored in plain Python when the scorer can, more with
        numpy (or the pipeline).
        """
        scorer = self.scorer
        if scorer is not None and scorer.scores_rows and len(rows) <= PLAIN_ROWS:
            return scorer.row_probabilities(rows)
        return self.positive_probability(rows).tolist()

    def self_check(self) -> bool:
        """Whether the model predicts a valid probability for the schema's example record.

        Both ways of scoring a request's rows are asked, and must agree.
        """
        example = [dataset.SCHEMA.example]
        try:
            probability = float(self.positive_probability(example)[0])
            served = self.probabilities(example)[0]
        except Exception:  # any failure at all means the model is not ready
            logger.exception("self-check prediction failed")
            return False
        return 0.0 <= probability <= 1.0 and abs(served - probability) <= AGREEMENT


def classify(probabilities: list[float]) -> list[int]:
    """The predicted class of each row: 1 where its probability is over one half."""
    return [1 if p > 0.5 else 0 for p in probabilities]


def predict(loaded: LoadedModel, records: dataset.Records, *, settings: Settings,
            request_id: str | None = None, test_mode: bool = False) -> Prediction:
    """Validate and predict records (a dict, a list of dicts, an array, a DataFrame); log rows.

    Raises ``dataset.DataValidationError`` naming the row, field and problem of invalid input.
    """
    started = time.perf_counter()
    if dataset.is_frame(records):
        frame = dataset.validate_records(records)
        probabilities = loaded.positive_probability(frame)
        rows = frame.to_dict("records")
    else:
        rows = dataset.validate_rows(records)
        probabilities = loaded.positive_probability(rows)
    probabilities = probabilities.tolist()
    labels = classify(probabilities)
    runtime = time.perf_counter() - started
    request_id = request_id or uuid.uuid4().hex
    logs.log_predictions(
        settings.log_dir,
        test_mode=test_mode,
        model_version=loaded.version,
        request_id=request_id,
        runtime=runtime,
        rows=rows,
        labels=labels,
        probabilities=probabilities,
        log_inputs=settings.log_inputs,
    )
    return Prediction(labels=labels, probabilities=probabilities,
                      model_version=loaded.version, request_id=request_id)


def predict_requests(loaded: LoadedModel, requests) -> list[Prediction]:
    """Predict several requests' validated rows in one model call.

    ``requests`` is a sequence of ``(rows, request_id)``. This is what a server does with
    requests that arrive together: the model's per-call cost is paid once for all of them,
    while each request keeps its own predictions and request id. Each prediction's
    ``runtime`` is the batch's; ``logs.prediction_lines`` turns them into the log's lines.
    """
    started = time.perf_counter()
    rows = [row for request_rows, _ in requests for row in request_rows]
    probabilities = loaded.probabilities(rows)
    labels = classify(probabilities)
    runtime = time.perf_counter() - started
    predictions, start = [], 0
    for request_rows, request_id in requests:
        end = start + len(request_rows)
        # Positional: a named tuple made with keywords costs twice as much, once per request.
        predictions.append(Prediction(labels[start:end], probabilities[start:end],
                                      loaded.version, request_id, runtime))
        start = end
    return predictions
