"""The model registry: versioned, immutable, checksummed artifacts in a directory.

Layout of the registry directory::

    .artifacts/<name>-<version>-<timestamp>/   one folder per training run, never modified
        model.skops                            the fitted pipeline (skops: no pickle)
        scorer.json                            its scoring spec, when numpy alone can score it
        metadata.json                          version, note, metrics, checksums, libraries
        train-data.csv                         the training data, for drift monitoring
    <name>-<version> -> .artifacts/...         symlink to the current folder of a version

A training run writes its folder under a temporary name, renames it into place, then swaps the
symlink with ``os.replace``: readers see the old version or the new one, never half of one,
and a run that fails or is killed leaves the previous version loadable.

skops and pandas are imported by the functions that need them: the service loads a model from
its scoring spec without either, and importing them costs a good part of a second at start-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

from . import data

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = ".artifacts"
MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
DATA_FILE = "train-data.csv"
SCORER_FILE = "scorer.json"
LIBRARIES = ("scikit-learn", "numpy", "pandas", "skops")
# An interrupted run leaves a temporary folder; one older than this is surely abandoned.
STALE_TEMP_SECONDS = 3600


class RegistryError(Exception):
    """Base class of registry errors."""


class ModelNotFoundError(RegistryError, LookupError):
    """No artifact exists for the requested name and version."""


class IntegrityError(RegistryError):
    """An artifact was modified, is incomplete or holds types outside the allowlist."""


@dataclass(frozen=True)
class Artifact:
    """A stored artifact: its folder and its metadata."""

    path: Path
    metadata: dict


def artifact_name(test_mode: bool) -> str:
    """The registry name of the model: test mode writes throw-away ``test-model`` artifacts."""
    return "test-model" if test_mode else "model"


def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries an artifact depends on."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_version(name)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[name] = "unknown"
    return versions


def sha256_bytes(payload: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(payload).hexdigest()


def _write_file(path: Path, payload: bytes) -> None:
    with open(path, "xb") as stream:
        stream.write(payload)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Registry:
    """Versioned artifacts under one directory (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike, *, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.root = Path(root)
        self.keep = keep

    @property
    def artifacts_dir(self) -> Path:
        """The folder that holds every artifact folder."""
        return self.root / ARTIFACTS_DIR

    def link(self, name: str, version: str) -> Path:
        """The symlink that designates the current artifact of a name and version."""
        return self.root / f"{name}-{version}"

    def save(self, name: str, version: str, *, estimator, training_data: pd.DataFrame,
             metadata: dict, scorer_spec: bytes | None = None) -> Artifact:
        """Store a fitted estimator, its training data and metadata as the new current artifact.

        ``scorer_spec`` is the estimator's verified scoring spec (JSON bytes), when it has one.
        The metadata gains the name, version, file checksums and library versions. On any
        failure the partial folder is removed and the previous artifact stays current.
        """
        import skops.io  # imported here: serving a model from its scoring spec does not need it

        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.artifacts_dir))
        try:
            # mkdtemp makes the folder private; a service running as another user must read it.
            staging.chmod(0o755)
            model_bytes = skops.io.dumps(estimator)
            data_bytes = data.canonical_csv(training_data)
            metadata = {
                **metadata,
                "name": name,
                "version": version,
                "artifact_sha256": sha256_bytes(model_bytes),
                "train_data_sha256": sha256_bytes(data_bytes),
                "libraries": library_versions(),
            }
            if scorer_spec is not None:
                metadata["scorer_sha256"] = sha256_bytes(scorer_spec)
                _write_file(staging / SCORER_FILE, scorer_spec)
            _write_file(staging / MODEL_FILE, model_bytes)
            _write_file(staging / DATA_FILE, data_bytes)
            self._write_metadata(staging, metadata)
            final = self._publish(staging, name, version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._swap_link(name, version, final)
        self.prune(name, version)
        return Artifact(path=final, metadata=metadata)

    @staticmethod
    def _write_metadata(folder: Path, metadata: dict) -> None:
        text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        _write_file(folder / METADATA_FILE, text.encode("utf-8"))

    def _publish(self, staging: Path, name: str, version: str) -> Path:
        """Rename the complete staging folder to its final, timestamped name."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.artifacts_dir / f"{name}-{version}-{stamp}"
        os.rename(staging, final)
        _fsync_dir(self.artifacts_dir)
        return final

    def _swap_link(self, name: str, version: str, target: Path) -> None:
        """Point the version's symlink at ``target`` atomically (relative, so it can move)."""
        link = self.link(name, version)
        temporary = self.root / f".{link.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        os.symlink(os.path.relpath(target, self.root), temporary)
        try:
            os.replace(temporary, link)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)

    def prune(self, name: str, version: str) -> list[Path]:
        """Remove all but the newest ``keep`` folders of a version and stale temporary folders.

        A folder that any symlink points to is never removed. Returns the removed folders.
        """
        if not self.artifacts_dir.is_dir():
            return []
        current = {
            entry.resolve() for entry in self.root.iterdir() if entry.is_symlink()
        }
        prefix = f"{name}-{version}-"
        folders = sorted(
            entry for entry in self.artifacts_dir.iterdir()
            if entry.is_dir() and entry.name.startswith(prefix)
            and entry.name[len(prefix):][:1].isdigit()
        )
        removed = [f for f in folders[:-self.keep] if f.resolve() not in current]
        cutoff = time.time() - STALE_TEMP_SECONDS
        removed += [
            entry for entry in self.artifacts_dir.glob(".tmp-*")
            if entry.is_dir() and entry.stat().st_mtime < cutoff
        ]
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    def resolve(self, name: str, version: str) -> Path:
        """The current artifact folder of a name and version."""
        link = self.link(name, version)
        if not os.path.lexists(link):
            raise ModelNotFoundError(
                f"no {name} version {version} in {self.root}: train it first"
            )
        folder = link.resolve()
        if not folder.is_dir():
            raise ModelNotFoundError(f"{link} points to a missing artifact folder {folder}")
        return folder

    def metadata(self, name: str, version: str) -> dict:
        """The metadata of the current artifact of a name and version."""
        return self._read_metadata(self.resolve(name, version), name, version)

    @staticmethod
    def _read_metadata(folder: Path, name: str, version: str) -> dict:
        path = folder / METADATA_FILE
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise IntegrityError(f"{path}: unreadable metadata ({error})") from None
        if not isinstance(metadata, dict) or (metadata.get("name"), metadata.get("version")) != (
            name, version
        ):
            raise IntegrityError(f"{path}: metadata does not describe {name} {version}")
        return metadata

    @staticmethod
    def _read_verified(path: Path, expected: str | None) -> bytes:
        try:
            payload = path.read_bytes()
        except OSError as error:
            raise IntegrityError(f"{path}: cannot read the file ({error.strerror})") from None
        actual = sha256_bytes(payload)
        if actual != expected:
            raise IntegrityError(
                f"{path}: checksum mismatch (metadata says {expected}, file is {actual}); "
                "the artifact was modified or corrupted, refusing to load it"
            )
        return payload

    def load(self, name: str, version: str, *, trusted_types: frozenset[str]) -> tuple:
        """Load the current estimator of a name and version; return (estimator, Artifact).

        The file's sha256 is checked against the metadata before anything is deserialised,
        and skops refuses every type that is neither safe by default nor in ``trusted_types``.
        Raises ``ModelNotFoundError`` or ``IntegrityError``.
        """
        import skops.io  # imported here: serving a model from its scoring spec does not need it

        folder = self.resolve(name, version)
        metadata = self._read_metadata(folder, name, version)
        payload = self._read_verified(folder / MODEL_FILE, metadata.get("artifact_sha256"))
        untrusted = set(skops.io.get_untrusted_types(data=payload))
        unexpected = sorted(untrusted - set(trusted_types))
        if unexpected:
            raise IntegrityError(
                f"{folder / MODEL_FILE}: holds types outside the allowlist: "
                f"{', '.join(unexpected)}; refusing to load it"
            )
        estimator = skops.io.loads(payload, trusted=sorted(untrusted))
        built_with = metadata.get("libraries", {}).get("scikit-learn")
        if built_with != library_versions()["scikit-learn"]:
            logger.warning(
                "%s %s was trained with scikit-learn %s; this is %s",
                name, version, built_with, library_versions()["scikit-learn"],
            )
        return estimator, Artifact(path=folder, metadata=metadata)

    def scorer_spec(self, name: str, version: str) -> tuple[dict | None, Artifact]:
        """The parsed scoring spec of the current artifact (None if it has none), and the artifact.

        The spec and the pipeline it derives from are both checked against their sha256 in the
        metadata, so a modified artifact is refused whichever file was changed, and without
        deserialising the pipeline. Raises ``ModelNotFoundError`` or ``IntegrityError``.
        """
        folder = self.resolve(name, version)
        metadata = self._read_metadata(folder, name, version)
        artifact = Artifact(path=folder, metadata=metadata)
        if "scorer_sha256" not in metadata:
            return None, artifact
        payload = self._read_verified(folder / SCORER_FILE, metadata["scorer_sha256"])
        self._read_verified(folder / MODEL_FILE, metadata.get("artifact_sha256"))
        try:
            spec = json.loads(payload)
        except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
            raise IntegrityError(f"{folder / SCORER_FILE}: not JSON ({error})") from None
        return spec, artifact

    def training_data(self, name: str, version: str) -> pd.DataFrame:
        """The archived training data of the current artifact, checksum-verified and validated."""
        folder = self.resolve(name, version)
        metadata = self._read_metadata(folder, name, version)
        path = folder / DATA_FILE
        self._read_verified(path, metadata.get("train_data_sha256"))
        return data.load_csv(path)

    def versions(self, name: str) -> list[str]:
        """The versions of ``name`` that have a current artifact, sorted numerically."""
        prefix = f"{name}-"
        found = [
            entry.name[len(prefix):] for entry in self.root.glob(f"{name}-*")
            if entry.is_symlink() and entry.name[len(prefix):][:1].isdigit()
        ] if self.root.is_dir() else []
        return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))
