"""Build, train, evaluate, load and predict.

Training compares candidate pipelines by cross-validation on the training split, against a
baseline that always predicts the class prior, keeps the simplest candidate within one
standard error of the best, evaluates it once on a held-out split and stores it in the
registry with its metrics. Prediction validates the records, scores them and logs every row.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score, f1_score, get_scorer, precision_score, recall_score, roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from . import data as dataset
from . import logs
from .config import Settings
from .registry import Registry, artifact_name

logger = logging.getLogger(__name__)

SEED = 42
TEST_SIZE = 0.2
CV_FOLDS = 5
SELECTION_METRIC = "roc_auc"
CV_METRICS = ("roc_auc", "f1", "accuracy")
# Types in a stored pipeline that skops does not trust by default but these candidates need:
# a random forest's trees, and the column list that older scikit-learn/skops pairs store for
# a ColumnTransformer. Loading refuses anything else.
TRUSTED_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.compose._column_transformer._RemainderColsList",
})
# Fewer examples of a class than this cannot be split into stratified folds meaningfully.
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class TrainResult:
    """What a training run stored: the version, the artifact folder and its metadata."""

    name: str
    version: str
    path: Path
    metadata: dict

    @property
    def metrics(self) -> dict:
        """Held-out, baseline and cross-validation metrics."""
        return self.metadata["metrics"]


@dataclass(frozen=True)
class Prediction:
    """Labels and positive-class probabilities of the predicted rows, with the model version."""

    labels: list[int]
    probabilities: list[float]
    model_version: str
    request_id: str

    def to_dict(self) -> dict:
        """A JSON-ready view of the prediction."""
        return {
            "request_id": self.request_id,
            "model_version": self.model_version,
            "predictions": self.labels,
            "probabilities": self.probabilities,
        }


def build_pipeline(classifier) -> Pipeline:
    """One-hot encode the categorical features, standardise the numeric ones, then classify.

    The encoder's categories come from the schema, not from the data, so every allowed value
    has a column even if the training data happens to lack it.
    """
    categorical, numeric = dataset.SCHEMA.categorical, dataset.SCHEMA.numeric
    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(
                    categories=[list(f.categories) for f in categorical],
                    sparse_output=False,
                    handle_unknown="error",
                ),
                [f.name for f in categorical],
            ),
            ("numeric", StandardScaler(), [f.name for f in numeric]),
        ],
        remainder="drop",
    )
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def candidate_models(seed: int = SEED) -> dict:
    """The candidate classifiers, simplest first (the order breaks near-ties)."""
    return {
        "logistic_regression": LogisticRegression(max_iter=1000),
        "random_forest": RandomForestClassifier(
            n_estimators=100, min_samples_leaf=5, random_state=seed, n_jobs=1
        ),
    }


def baseline_model() -> DummyClassifier:
    """The baseline every candidate must beat: it predicts the class prior."""
    return DummyClassifier(strategy="prior")


def _held_out_metrics(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series) -> dict:
    probability = pipeline.predict_proba(X)[:, 1]
    predicted = pipeline.predict(X)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probability)),
    }


def _class_balance(y: pd.Series) -> dict:
    counts = y.value_counts().reindex(dataset.SCHEMA.classes, fill_value=0)
    return {str(label): round(int(n) / len(y), 4) for label, n in counts.items()}


def _check_trainable(frame: pd.DataFrame) -> None:
    counts = frame[dataset.TARGET].value_counts().reindex(dataset.SCHEMA.classes, fill_value=0)
    if counts.min() < MIN_CLASS_ROWS:
        raise dataset.DataValidationError(
            f"training data needs at least {MIN_CLASS_ROWS} rows of each class of "
            f"{dataset.TARGET!r}, got {dict((str(k), int(v)) for k, v in counts.items())}",
            field=dataset.TARGET,
        )


def _cross_validate(candidates: dict, X: pd.DataFrame, y: pd.Series, seed: int) -> dict:
    """Mean and standard deviation of each metric over stratified folds, per candidate."""
    folds = list(StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed).split(X, y))
    scorers = {metric: get_scorer(metric) for metric in CV_METRICS}
    scores = {}
    # A bar on a terminal only (disable=None); the log lines, printed above it, serve CI logs.
    with logging_redirect_tqdm(loggers=[logging.getLogger(__package__)]), tqdm(
        total=len(candidates) * len(folds), desc="cross-validating", unit="fit",
        disable=None, leave=False,
    ) as progress:
        for number, (name, pipeline) in enumerate(candidates.items(), start=1):
            logger.info("cross-validating %s (%d/%d, %d folds)", name, number,
                        len(candidates), len(folds))
            results = {metric: [] for metric in CV_METRICS}
            for train_rows, test_rows in folds:
                fitted = clone(pipeline).fit(X.iloc[train_rows], y.iloc[train_rows])
                for metric, scorer in scorers.items():
                    results[metric].append(scorer(fitted, X.iloc[test_rows], y.iloc[test_rows]))
                progress.update()
            scores[name] = {}
            for metric, values in results.items():
                scores[name][f"{metric}_mean"] = round(float(np.mean(values)), 4)
                scores[name][f"{metric}_std"] = round(float(np.std(values)), 4)
    return scores


def select_model(cv_scores: dict, baseline: str = "baseline") -> str:
    """The simplest candidate whose mean score is within one standard error of the best.

    Candidates are in order of simplicity; a simpler model that is statistically as good is
    cheaper to serve and to explain.
    """
    mean, std = f"{SELECTION_METRIC}_mean", f"{SELECTION_METRIC}_std"
    contenders = {name: s for name, s in cv_scores.items() if name != baseline}
    best = max(contenders.values(), key=lambda s: s[mean])
    bar = best[mean] - best[std] / math.sqrt(CV_FOLDS)
    return next(name for name, s in contenders.items() if s[mean] >= bar)


def _default_data(settings: Settings) -> tuple[pd.DataFrame, str]:
    if settings.data_path is not None:
        return dataset.load_csv(settings.data_path), str(settings.data_path)
    return dataset.make_default_dataset(), "embedded default data set"


def fit_and_evaluate(frame: pd.DataFrame, seed: int = SEED) -> tuple[Pipeline, dict]:
    """Compare the candidates on the training split, fit the chosen one, evaluate it.

    Returns the fitted pipeline and its metrics: held-out scores of the model and of the
    baseline, cross-validation scores of every candidate, the class balance of both splits.
    """
    X, y = frame[dataset.FEATURES], frame[dataset.TARGET]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, stratify=y, random_state=seed
    )
    candidates = {name: build_pipeline(clf) for name, clf in candidate_models(seed).items()}
    candidates["baseline"] = build_pipeline(baseline_model())
    cv_scores = _cross_validate(candidates, X_train, y_train, seed)
    selected = select_model(cv_scores)
    logger.info("selected %s; evaluating it on the held-out split", selected)
    pipeline = clone(candidates[selected]).fit(X_train, y_train)
    baseline = clone(candidates["baseline"]).fit(X_train, y_train)
    metrics = {
        "selected_model": selected,
        "selection": "simplest candidate within one standard error of the best "
                     f"cross-validated {SELECTION_METRIC}",
        "test": _held_out_metrics(pipeline, X_test, y_test),
        "baseline_test": _held_out_metrics(baseline, X_test, y_test),
        "cross_validation": cv_scores,
        "class_balance": {"train": _class_balance(y_train), "test": _class_balance(y_test)},
        "n_train": len(X_train),
        "n_test": len(X_test),
    }
    return pipeline, metrics


def train(settings: Settings, data: pd.DataFrame | None = None, *,
          test_mode: bool = False, seed: int = SEED) -> TrainResult:
    """Train, compare, evaluate and store a model version; log the run.

    ``data`` defaults to ``settings.data_path`` or the embedded data set. Test mode
    stores a throw-away ``test-model`` and writes the test logs, never the production ones.
    """
    started = time.perf_counter()
    if data is None:
        frame, source = _default_data(settings)
    else:
        frame, source = dataset.validate_dataset(data), "in-memory data frame"
    _check_trainable(frame)
    logger.info("training version %s on %d rows (%s)", settings.version, len(frame), source)
    pipeline, metrics = fit_and_evaluate(frame, seed)

    name = artifact_name(test_mode)
    fingerprint = dataset.fingerprint(frame)
    artifact = Registry(settings.registry_dir).save(
        name, settings.version,
        estimator=pipeline,
        training_data=frame,
        metadata={
            "note": settings.version_note,
            "trained_at": logs.utc_now(),
            "metrics": metrics,
            "data": {"fingerprint": fingerprint, "n_rows": len(frame), "source": source},
            "features": dataset.FEATURES,
            "target": dataset.TARGET,
        },
    )
    runtime = time.perf_counter() - started
    logs.log_training(
        settings.log_dir,
        test_mode=test_mode,
        model_version=settings.version,
        runtime=runtime,
        input_data_summary=dataset.summarize(frame),
        details={
            "version_note": settings.version_note,
            "metrics": {key: metrics[key] for key in ("selected_model", "test", "baseline_test")},
            "data_fingerprint": fingerprint,
            "n_rows": len(frame),
            "artifact": str(artifact.path),
        },
    )
    logger.info("stored version %s in %s (%.1f s)", settings.version, artifact.path, runtime)
    return TrainResult(name=name, version=settings.version, path=artifact.path,
                       metadata=artifact.metadata)


class FastScorer:
    """The pipeline's positive-class probability computed with plain numpy.

    scikit-learn's per-call overhead (input checks, column selection through pandas) costs
    milliseconds, far more than the model itself; for the pipeline ``build_pipeline`` makes,
    the same arithmetic takes microseconds. ``LoadedModel`` verifies this scorer against the
    pipeline on a grid of records at load time and falls back to the pipeline otherwise.
    """

    def __init__(self, pipeline: Pipeline):
        preprocess, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
        if len(pipeline.steps) != 2 or not isinstance(preprocess, ColumnTransformer):
            raise TypeError("unsupported pipeline shape")
        self._encoders = []
        offset = 0
        for name, transformer, columns in preprocess.transformers_:
            if name == "remainder" and transformer == "drop":
                continue
            if isinstance(transformer, OneHotEncoder) and transformer.drop_idx_ is None:
                for column, categories in zip(columns, transformer.categories_):
                    index = {category: offset + i for i, category in enumerate(categories)}
                    self._encoders.append(("onehot", column, index))
                    offset += len(categories)
            elif isinstance(transformer, StandardScaler):
                for i, column in enumerate(columns):
                    mean = transformer.mean_[i] if transformer.with_mean else 0.0
                    scale = transformer.scale_[i] if transformer.with_std else 1.0
                    self._encoders.append(("scale", column, (offset, mean, scale)))
                    offset += 1
            else:
                raise TypeError(f"unsupported transformer {type(transformer).__name__}")
        self.width = offset
        if list(classifier.classes_) != list(dataset.SCHEMA.classes):
            raise TypeError("unsupported classes")
        if isinstance(classifier, LogisticRegression) and classifier.coef_.shape[0] == 1:
            self._coef, self._intercept = classifier.coef_[0], float(classifier.intercept_[0])
            self._classifier = None
        else:
            self._classifier = classifier

    def encode(self, columns: dict) -> np.ndarray:
        """The preprocessed matrix of rows given as a mapping of column name to values."""
        n_rows = len(next(iter(columns.values())))
        matrix = np.zeros((n_rows, self.width))
        rows = np.arange(n_rows)
        for kind, column, spec in self._encoders:
            values = columns[column]
            if kind == "onehot":
                matrix[rows, [spec[value] for value in values]] = 1.0
            else:
                offset, mean, scale = spec
                matrix[:, offset] = (np.asarray(values, dtype=float) - mean) / scale
        return matrix

    def positive_probability(self, columns: dict) -> np.ndarray:
        """P(class 1) for each row."""
        matrix = self.encode(columns)
        if self._classifier is not None:
            return self._classifier.predict_proba(matrix)[:, 1]
        return 1.0 / (1.0 + np.exp(-(matrix @ self._coef + self._intercept)))


def check_records(n_rows: int = 64) -> pd.DataFrame:
    """Deterministic records that cover every category and each numeric range."""
    columns = {}
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


@dataclass
class LoadedModel:
    """A loaded, verified model version ready to predict."""

    pipeline: Pipeline
    metadata: dict
    name: str
    version: str
    path: Path
    scorer: FastScorer | None = field(default=None, repr=False)

    def __post_init__(self):
        self.scorer = self._verified_scorer()

    def _verified_scorer(self) -> FastScorer | None:
        try:
            scorer = FastScorer(self.pipeline)
        except (TypeError, AttributeError) as error:
            logger.info("fast scoring unavailable (%s); using the pipeline", error)
            return None
        frame = check_records()
        expected = self.pipeline.predict_proba(frame)[:, 1]
        actual = scorer.positive_probability({c: frame[c].to_numpy() for c in frame.columns})
        if not np.allclose(actual, expected, rtol=0, atol=1e-9):
            logger.warning("fast scoring disagrees with the pipeline; using the pipeline")
            return None
        return scorer

    def positive_probability(self, records) -> np.ndarray:
        """P(class 1) of validated records: a list of dicts or a DataFrame in schema order."""
        if isinstance(records, pd.DataFrame):
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

    def self_check(self) -> bool:
        """Whether the model predicts a valid probability for the schema's example record."""
        try:
            probability = float(self.positive_probability([dataset.SCHEMA.example])[0])
        except Exception:  # any failure at all means the model is not ready
            logger.exception("self-check prediction failed")
            return False
        return 0.0 <= probability <= 1.0


def load_model(settings: Settings, *, test_mode: bool = False) -> LoadedModel:
    """Load and verify the configured model version from the registry.

    Raises ``registry.ModelNotFoundError`` when it was never trained and
    ``registry.IntegrityError`` when its files were modified.
    """
    name = artifact_name(test_mode)
    pipeline, artifact = Registry(settings.registry_dir).load(
        name, settings.version, trusted_types=TRUSTED_TYPES
    )
    return LoadedModel(pipeline=pipeline, metadata=artifact.metadata, name=name,
                       version=settings.version, path=artifact.path)


def load_training_data(settings: Settings, *, test_mode: bool = False) -> pd.DataFrame:
    """The archived, checksum-verified training data of the configured model version."""
    return Registry(settings.registry_dir).training_data(artifact_name(test_mode),
                                                         settings.version)


def classify(probabilities: list[float]) -> list[int]:
    """The predicted class of each row: 1 where its probability is over one half."""
    return [1 if p > 0.5 else 0 for p in probabilities]


def predict(loaded: LoadedModel, records: dataset.Records, *, settings: Settings,
            request_id: str | None = None, test_mode: bool = False,
            validated: bool = False) -> Prediction:
    """Validate and predict records (a dict, a list of dicts, an array, a DataFrame); log rows.

    Raises ``dataset.DataValidationError`` naming the row, field and problem of invalid input.
    ``validated`` skips the check for a list of rows the caller has already validated with
    the same rules (the HTTP service's request model), which saves most of a large batch's time.
    """
    started = time.perf_counter()
    if isinstance(records, pd.DataFrame):
        frame = dataset.validate_records(records)
        probabilities = loaded.positive_probability(frame)
        rows = frame.to_dict("records")
    else:
        rows = records if validated else dataset.validate_rows(records)
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


def predict_requests(loaded: LoadedModel, requests, *, settings: Settings,
                     test_mode: bool = False) -> list[Prediction]:
    """Predict several requests' validated rows in one model call and one log append.

    ``requests`` is a sequence of ``(rows, request_id)``. This is what a server does with
    requests that arrive together: the model's per-call cost and the log's file operations are
    paid once for all of them, while each request keeps its own predictions, request id and
    row numbers in the log.
    """
    started = time.perf_counter()
    rows = [row for request_rows, _ in requests for row in request_rows]
    probabilities = loaded.positive_probability(rows).tolist()
    labels = classify(probabilities)
    runtime = time.perf_counter() - started
    predictions, logged, start = [], [], 0
    for request_rows, request_id in requests:
        end = start + len(request_rows)
        prediction = Prediction(labels=labels[start:end], probabilities=probabilities[start:end],
                                model_version=loaded.version, request_id=request_id)
        predictions.append(prediction)
        logged.append(logs.PredictedRequest(request_id, runtime, request_rows,
                                            prediction.labels, prediction.probabilities))
        start = end
    logs.log_prediction_requests(settings.log_dir, test_mode=test_mode,
                                 model_version=loaded.version, requests=logged,
                                 log_inputs=settings.log_inputs)
    return predictions
