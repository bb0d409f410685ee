"""A fitted scikit-learn pipeline as prediction sees it: its scoring spec, and the model it makes.

Training stores, next to the pipeline, the plain-JSON scoring spec that ``scoring.NumpyScorer``
scores with numpy alone, when that gives the pipeline's own probabilities
(``verified_scorer_spec``). A model loaded from its pipeline (``loading.load_pipeline``, or
``loading.load_model`` for a model without a spec) is a ``PipelineModel``: numpy scores it too
where the spec derived from the pipeline agrees with it, the pipeline itself where not.

This module imports scikit-learn and pandas; serving reaches it only through ``loading``, and
only for a model without a spec.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import data as dataset
from .scoring import AGREEMENT, LOGISTIC, SPEC_FORMAT, LoadedModel, NumpyScorer, SpecError

logger = logging.getLogger(__name__)


def scoring_spec(pipeline: Pipeline) -> dict:
    """The JSON-ready scoring spec of a pipeline ``training.build_pipeline`` makes.

    The encoders' columns and statistics always; the classifier's coefficients when it is a
    binary logistic regression, else ``"classifier": None`` (numpy cannot score it alone).
    Raises ``TypeError`` for a pipeline of another shape.
    """
    preprocess, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    if len(pipeline.steps) != 2 or not isinstance(preprocess, ColumnTransformer):
        raise TypeError("unsupported pipeline shape")
    encoders = []
    offset = 0
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" and transformer == "drop":
            continue
        if isinstance(transformer, OneHotEncoder) and transformer.drop_idx_ is None:
            for column, categories in zip(columns, transformer.categories_):
                index = {str(category): offset + i for i, category in enumerate(categories)}
                encoders.append({"kind": "one_hot", "feature": column, "columns": index})
                offset += len(categories)
        elif isinstance(transformer, StandardScaler):
            for i, column in enumerate(columns):
                mean = float(transformer.mean_[i]) if transformer.with_mean else 0.0
                scale = float(transformer.scale_[i]) if transformer.with_std else 1.0
                encoders.append({"kind": "standardize", "feature": column, "column": offset,
                                 "mean": mean, "scale": scale})
                offset += 1
        else:
            raise TypeError(f"unsupported transformer {type(transformer).__name__}")
    if list(classifier.classes_) != list(dataset.SCHEMA.classes):
        raise TypeError("unsupported classes")
    linear = None
    if isinstance(classifier, LogisticRegression) and classifier.coef_.shape[0] == 1:
        linear = {"kind": LOGISTIC, "coef": [float(c) for c in classifier.coef_[0]],
                  "intercept": float(classifier.intercept_[0])}
    return {"format": SPEC_FORMAT, "features": list(dataset.FEATURES),
            "classes": [int(c) for c in dataset.SCHEMA.classes], "width": offset,
            "encoders": encoders, "classifier": linear}


def fast_scorer(pipeline: Pipeline, spec: dict | None = None) -> NumpyScorer:
    """The pipeline's positive-class probability computed with plain numpy.

    scikit-learn's per-call overhead (input checks, column selection through pandas) costs
    milliseconds, far more than the model itself; for the pipeline
    ``training.build_pipeline`` makes, the same arithmetic takes microseconds. A classifier
    other than a logistic regression scores the numpy-encoded rows itself. ``spec`` is the
    pipeline's ``scoring_spec`` when the caller has it already (as parsed back from its JSON,
    say). Raises ``TypeError`` for an
    unsupported pipeline and ``SpecError`` for one whose encoders do not cover the schema.
    """
    spec = scoring_spec(pipeline) if spec is None else spec
    return NumpyScorer(spec, classifier=None if spec["classifier"] else pipeline.steps[-1][1])


def check_records(n_rows: int = 64) -> pd.DataFrame:
    """Deterministic records that cover every category and each numeric range."""
    columns: dict[str, list] = {}
    for j, feature in enumerate(dataset.SCHEMA.features):
        if isinstance(feature, dataset.CategoricalFeature):
            k = len(feature.categories)
            columns[feature.name] = [feature.categories[(i + j) % k] for i in range(n_rows)]
        else:
            grid = np.linspace(feature.minimum, feature.maximum, n_rows)
            values = [grid[(i * 7 + j * 13) % n_rows] for i in range(n_rows)]
            columns[feature.name] = [int(round(v)) if feature.integer else float(v)
                                     for v in values]
    return dataset.validate_records(pd.DataFrame(columns))


def agrees_with(scorer: NumpyScorer, pipeline: Pipeline) -> bool:
    """Whether a numpy scorer gives the pipeline's probabilities on ``check_records``.

    Both of its ways are checked: numpy on the whole frame and, where the scorer has one,
    plain Python row by row (what the service uses for small requests).
    """
    frame = check_records()
    expected = pipeline.predict_proba(frame)[:, 1]
    actual = scorer.positive_probability({c: frame[c].to_numpy() for c in frame.columns})
    if not np.allclose(actual, expected, rtol=0, atol=AGREEMENT):
        return False
    if not scorer.scores_rows:
        return True
    rows = frame.to_dict("records")
    return bool(np.allclose(scorer.row_probabilities(rows), expected, rtol=0, atol=AGREEMENT))


def _agreeing_scorer(spec: dict, pipeline: Pipeline, *, disagreement: str) -> NumpyScorer | None:
    """The numpy scorer of the pipeline's ``spec``, if it gives the pipeline's probabilities.

    What training (before storing a spec) and loading a pipeline (before scoring with numpy)
    both check. A spec without a classifier (a forest) is scored by the pipeline's own
    classifier on the numpy-encoded rows. When the probabilities differ on ``check_records``,
    logs ``disagreement`` as a warning and returns None. Raises ``SpecError`` for a spec
    ``NumpyScorer`` refuses; the caller says what happens instead.
    """
    scorer = fast_scorer(pipeline, spec)
    if agrees_with(scorer, pipeline):
        return scorer
    logger.warning(disagreement)
    return None


def verified_scorer_spec(pipeline: Pipeline) -> bytes | None:
    """The pipeline's scoring spec as JSON bytes, if numpy alone scores it as the pipeline does.

    The spec is checked the way the service will use it: parsed back from these very bytes.
    None (and a log line saying why) when the pipeline needs scikit-learn to score.
    """
    try:
        spec = scoring_spec(pipeline)
    except (TypeError, AttributeError) as error:
        logger.info("no scoring spec: %s", error)
        return None
    if spec["classifier"] is None:
        logger.info("no scoring spec: %s needs scikit-learn to score",
                    type(pipeline.steps[-1][1]).__name__)
        return None
    payload = (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode("utf-8")
    try:
        scorer = _agreeing_scorer(
            json.loads(payload), pipeline,
            disagreement="no scoring spec: its numpy scoring disagrees with the pipeline")
    except SpecError as error:
        logger.warning("no scoring spec: %s", error)
        return None
    return None if scorer is None else payload


@dataclass
class PipelineModel(LoadedModel):
    """A model version loaded from its pipeline; numpy scores it when verified to agree."""

    def __post_init__(self):
        if self.scorer is None:
            self.scorer = self._verified_scorer()

    def _verified_scorer(self) -> NumpyScorer | None:
        try:
            spec = scoring_spec(self.pipeline)
        except (TypeError, AttributeError) as error:
            logger.info("fast scoring unavailable (%s); using the pipeline", error)
            return None
        try:
            return _agreeing_scorer(
                spec, self.pipeline,
                disagreement="fast scoring disagrees with the pipeline; using the pipeline")
        except SpecError as error:
            logger.info("fast scoring unavailable (%s); using the pipeline", error)
            return None
