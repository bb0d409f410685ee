"""The one loader of a model version: from its scoring spec, or else from its pipeline.

``load_model`` is what the service, ``predict`` and the monitor use: a model that has a
verified scoring spec is scored by numpy (``scoring.NumpyScorer``) without importing
scikit-learn, SciPy, skops or pandas, which together cost most of a second of start-up; a
model numpy cannot score (a random forest) has no spec and is loaded from its pipeline
(``pipeline_scoring.PipelineModel``). ``load_pipeline`` always loads the pipeline, for code that
wants the scikit-learn object itself.

This module imports the package's light modules only; scikit-learn comes in with
``pipeline_scoring``, imported by the functions that load a pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Settings
from .registry import SCORER_FILE, IntegrityError, Registry, artifact_name
from .scoring import LoadedModel, NumpyScorer

if TYPE_CHECKING:
    from .pipeline_scoring import PipelineModel

# Types in a stored pipeline that skops does not trust by default but the candidates need:
# a random forest's trees, and the column list that older scikit-learn/skops pairs store for
# a ColumnTransformer. Loading refuses anything else.
TRUSTED_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.compose._column_transformer._RemainderColsList",
})


def load_model(settings: Settings, *, test_mode: bool = False) -> LoadedModel:
    """Load the configured version: from its scoring spec when it has one, else its pipeline.

    Every file of the artifact that scoring relies on is checked against the sha256 in the
    metadata first. Without a spec (a model numpy cannot score, or a registry written before
    specs existed) the pipeline is loaded as ``load_pipeline`` does. Raises
    ``registry.ModelNotFoundError`` or ``registry.IntegrityError``.
    """
    name = artifact_name(test_mode)
    spec, artifact = Registry(settings.registry_dir).scorer_spec(name, settings.version)
    if spec is None:
        return load_pipeline(settings, test_mode=test_mode)
    try:
        scorer = NumpyScorer(spec)
    except Exception as error:  # an untrusted file: any failure to use it is a refusal
        raise IntegrityError(
            f"{artifact.path / SCORER_FILE}: not a usable scoring spec ({error}); "
            "refusing to load it"
        ) from None
    return LoadedModel(pipeline=None, metadata=artifact.metadata, name=name,
                       version=settings.version, path=artifact.path, scorer=scorer)


def load_pipeline(settings: Settings, *, test_mode: bool = False) -> PipelineModel:
    """Load and verify the configured model version's pipeline from the registry.

    Raises ``registry.ModelNotFoundError`` when it was never trained and
    ``registry.IntegrityError`` when its files were modified.
    """
    from .pipeline_scoring import PipelineModel  # scikit-learn, only for a pipeline

    name = artifact_name(test_mode)
    pipeline, artifact = Registry(settings.registry_dir).load(
        name, settings.version, trusted_types=TRUSTED_TYPES
    )
    return PipelineModel(pipeline=pipeline, metadata=artifact.metadata, name=name,
                         version=settings.version, path=artifact.path)
