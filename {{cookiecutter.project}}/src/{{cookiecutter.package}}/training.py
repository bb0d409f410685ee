"""Build, cross-validate, select, evaluate and store a model version.

Training compares candidate pipelines by cross-validation on the training split, against a
baseline that always predicts the class prior, keeps the simplest candidate within one
standard error of the best, evaluates it once on a held-out split and stores it in the
registry with its metrics, with a plain-JSON scoring spec when numpy alone can score it
(``pipeline_scoring.verified_scorer_spec``).

Fits run on the CPU, or, where ``device.detect`` finds a GPU, with the classifier on the GPU
through scikit-learn's array API dispatch (``fit_pipeline``); the stored pipeline is the same
plain numpy artifact either way, and an accelerated model is stored only if its held-out
probabilities agree with a CPU fit's (``check_parity``).

Loading a stored model is ``loading``'s job, and prediction (validate, score, log every row)
``scoring``'s.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import config_context
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
from sklearn.utils import get_tags
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from . import data as dataset
from . import device, logs
from .config import Settings
from .pipeline_scoring import verified_scorer_spec
from .registry import Registry, artifact_name

logger = logging.getLogger(__name__)

SEED = 42
TEST_SIZE = 0.2
CV_FOLDS = 5
SELECTION_METRIC = "roc_auc"
CV_METRICS = ("roc_auc", "f1", "accuracy")
# Fewer examples of a class than this cannot be split into stratified folds meaningfully.
MIN_CLASS_ROWS = 10
# How far an accelerated fit's held-out probabilities may be from a CPU fit's. The same
# solver on another device sums in another order; when that moves lbfgs's stopping point by
# an iteration, probabilities move by about its gradient tolerance (1e-4). A tenth of a
# percentage point is far below any decision threshold, and far above rounding.
PARITY_TOLERANCE = 1e-3


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


def runs_on_device(classifier, compute: device.Compute | None) -> bool:
    """Whether ``fit_pipeline`` fits ``classifier`` on ``compute``'s accelerator.

    Those whose scikit-learn tags declare array API support: in scikit-learn 1.9, a logistic
    regression with the lbfgs solver, not a random forest (Cython) nor the baseline.
    """
    return (compute is not None and compute.accelerator is not None
            and get_tags(classifier).array_api_support)


def fit_pipeline(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series,
                 compute: device.Compute | None = None) -> Pipeline:
    """Fit ``pipeline`` on (X, y), its classifier on the accelerator where it can run there.

    Without an accelerator, or for a classifier without array API support, this is
    ``pipeline.fit(X, y)``. Otherwise the preprocessing fits on the CPU (the one-hot encoder
    and the column transformer have no array API support), the classifier fits on the
    encoded rows on the device with scikit-learn's array API dispatch, and its fitted arrays
    come back as numpy: the pipeline is the plain artifact a CPU fit gives. When the device
    fails, the run falls back to the CPU (``compute`` records why) and this fit is redone there.
    """
    classifier = pipeline.steps[-1][1]
    if compute is None or not runs_on_device(classifier, compute):
        return pipeline.fit(X, y)
    accelerator = compute.accelerator
    assert accelerator is not None  # runs_on_device says there is one
    preprocess = pipeline[:-1]
    features = preprocess.fit_transform(X, y)
    try:
        with config_context(array_api_dispatch=True):
            classifier.fit(accelerator.to_device(features), np.asarray(y))
        for name, value in vars(classifier).items():
            if name.endswith("_") and hasattr(value, "__dlpack__") \
                    and not isinstance(value, np.ndarray):
                setattr(classifier, name, accelerator.to_numpy(value))
    except Exception as error:  # out of device memory, a driver fault: the CPU still can
        compute.fall_back(f"the fit on {accelerator.device} failed: "
                          f"{type(error).__name__}: {error}")
        logger.warning("%s; fitting on the CPU from now on", compute.fallback_reason)
        return pipeline.fit(X, y)
    pipeline.steps[:-1] = preprocess.steps
    return pipeline


def check_parity(fitted: Pipeline, unfitted: Pipeline, X_train: pd.DataFrame,
                 y_train: pd.Series, X_test: pd.DataFrame, compute: device.Compute) -> dict:
    """Compare an accelerated fit with a CPU fit of the same pipeline on the held-out rows.

    Returns the record for the model's metadata (largest absolute difference of the
    positive-class probabilities, the tolerance, the rows compared). Raises
    ``device.ParityError`` when the difference exceeds ``PARITY_TOLERANCE``.
    """
    reference = clone(unfitted).fit(X_train, y_train)
    difference = float(np.max(np.abs(fitted.predict_proba(X_test)[:, 1]
                                     - reference.predict_proba(X_test)[:, 1])))
    parity = {"reference": "cpu", "max_abs_probability_difference": difference,
              "tolerance": PARITY_TOLERANCE, "n_rows": len(X_test)}
    if not difference <= PARITY_TOLERANCE:  # NaN fails too
        raise device.ParityError(
            f"the fit on {compute.device} disagrees with the same fit on the CPU: held-out "
            f"probabilities differ by up to {difference:.3g} (tolerance {PARITY_TOLERANCE:g}); "
            "no model was stored")
    logger.info("parity with a CPU fit: held-out probabilities within %.2g (tolerance %g)",
                difference, PARITY_TOLERANCE)
    return parity


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


def _cross_validate(candidates: dict, X: pd.DataFrame, y: pd.Series, seed: int,
                    compute: device.Compute | None = None) -> dict:
    """Mean and standard deviation of each metric over stratified folds, per candidate."""
    folds = list(StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed).split(X, y))
    scorers = {metric: get_scorer(metric) for metric in CV_METRICS}
    scores: dict[str, dict[str, float]] = {}
    # A bar on a terminal only (disable=None); the log lines, printed above it, serve CI logs.
    with logging_redirect_tqdm(loggers=[logging.getLogger(__package__)]), tqdm(
        total=len(candidates) * len(folds), desc="cross-validating", unit="fit",
        disable=None, leave=False,
    ) as progress:
        for number, (name, pipeline) in enumerate(candidates.items(), start=1):
            logger.info("cross-validating %s (%d/%d, %d folds)", name, number,
                        len(candidates), len(folds))
            results: dict[str, list[float]] = {metric: [] for metric in CV_METRICS}
            for train_rows, test_rows in folds:
                fitted = fit_pipeline(clone(pipeline), X.iloc[train_rows], y.iloc[train_rows],
                                      compute)
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


def fit_and_evaluate(frame: pd.DataFrame, seed: int = SEED,
                     compute: device.Compute | None = None) -> tuple[Pipeline, dict]:
    """Compare the candidates on the training split, fit the chosen one, evaluate it.

    Returns the fitted pipeline and its metrics: held-out scores of the model and of the
    baseline, cross-validation scores of every candidate, the class balance of both splits.
    With an accelerator in ``compute``, the chosen pipeline, when fitted there, must agree
    with a CPU fit (``check_parity``, recorded in ``compute.parity``).
    """
    X, y = frame[dataset.FEATURES], frame[dataset.TARGET]
    train_rows, test_rows = _held_out_split(frame, seed)
    X_train, X_test = X.loc[train_rows], X.loc[test_rows]
    y_train, y_test = y.loc[train_rows], y.loc[test_rows]
    candidates = {name: build_pipeline(clf) for name, clf in candidate_models(seed).items()}
    candidates["baseline"] = build_pipeline(baseline_model())
    cv_scores = _cross_validate(candidates, X_train, y_train, seed, compute)
    selected = select_model(cv_scores)
    logger.info("selected %s; evaluating it on the held-out split", selected)
    on_device = runs_on_device(candidates[selected].steps[-1][1], compute)
    pipeline = fit_pipeline(clone(candidates[selected]), X_train, y_train, compute)
    if on_device and compute is not None and compute.accelerator is not None:
        compute.parity = check_parity(pipeline, candidates[selected], X_train, y_train, X_test,
                                      compute)
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


def _held_out_split(frame: pd.DataFrame, seed: int) -> tuple[pd.Index, pd.Index]:
    """The one rule for the held-out split: index labels of the training and the test rows."""
    train_rows, test_rows = train_test_split(frame.index, test_size=TEST_SIZE,
                                             stratify=frame[dataset.TARGET], random_state=seed)
    return train_rows, test_rows


def training_split(frame: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """The rows ``fit_and_evaluate`` fits on, in their original order: the held-out split
    left out. Drift monitoring compares against them."""
    train_rows, _ = _held_out_split(frame, seed)
    return frame.loc[frame.index.isin(train_rows)].reset_index(drop=True)


def train(settings: Settings, data: pd.DataFrame | None = None, *,
          test_mode: bool = False, seed: int = SEED,
          compute: device.Compute | None = None) -> TrainResult:
    """Train, compare, evaluate and store a model version; log the run.

    ``data`` defaults to ``settings.data_path`` or the embedded data set. Test mode
    stores a throw-away ``test-model`` and writes the test logs, never the production ones.
    ``compute`` (default: what ``device.detect`` finds) says where the fits run; the training
    log and the metadata record it. Raises ``device.ParityError``, storing nothing, when an
    accelerated fit disagrees with a CPU fit.
    """
    started = time.perf_counter()
    compute = device.detect() if compute is None else compute
    logger.info(compute.describe())
    if data is None:
        frame, source = _default_data(settings)
    else:
        frame, source = dataset.validate_dataset(data), "in-memory data frame"
    _check_trainable(frame)
    logger.info("training version %s on %d rows (%s)", settings.version, len(frame), source)
    pipeline, metrics = fit_and_evaluate(frame, seed, compute)

    name = artifact_name(test_mode)
    fingerprint = dataset.fingerprint(frame)
    artifact = Registry(settings.registry_dir).save(
        name, settings.version,
        estimator=pipeline,
        scorer_spec=verified_scorer_spec(pipeline),
        training_data=training_split(frame, seed),
        metadata={
            "note": settings.version_note,
            "trained_at": logs.utc_now(),
            "metrics": metrics,
            "data": {"fingerprint": fingerprint, "n_rows": len(frame), "source": source},
            "features": dataset.FEATURES,
            "target": dataset.TARGET,
            "compute": compute.metadata(),
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
            "compute": compute.metadata(),
        },
    )
    logger.info("stored version %s in %s (%.1f s)", settings.version, artifact.path, runtime)
    return TrainResult(name=name, version=settings.version, path=artifact.path,
                       metadata=artifact.metadata)


def load_training_data(settings: Settings, *, test_mode: bool = False) -> pd.DataFrame:
    """The archived, checksum-verified training data of the configured model version."""
    return Registry(settings.registry_dir).training_data(artifact_name(test_mode),
                                                         settings.version)
