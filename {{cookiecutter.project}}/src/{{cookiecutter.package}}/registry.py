"""The model registry: versioned, immutable, checksummed artifacts in a directory.

Layout of the registry directory::

    .artifacts/<name>-<version>-<timestamp>/   one folder per training run, never modified
        model.skops                            the fitted pipeline (skops: no pickle)
        scorer.json                            its scoring spec, when numpy alone can score it
        metadata.json                          version, note, metrics, checksums, libraries
        train-data.csv                         the training data, for drift monitoring
        SHA256SUMS                             the sha256 of every other file (``sha256sum -c``)
    <name>-<version> -> .artifacts/...         symlink to the current folder of a version
    .train.lock, .write.lock                   file locks: one training run, one writer at a time

A training run writes its folder under a temporary name, renames it into place, then swaps the
symlink with ``os.replace``: readers see the old version or the new one, never half of one,
and a run that fails or is killed leaves the previous version loadable. The temporary folder
a killed run leaves is removed by the next writer, or by ``remove_abandoned`` when a process
starts using the registry: every writer holds ``.write.lock`` while its temporary folder
exists, so a folder without a lock holder is surely abandoned.

Integrity: ``metadata.json`` records the sha256 of the model, scorer and data files, and
``SHA256SUMS`` records the sha256 of every file, metadata included; every read checks the
files it uses. Checksums detect corruption and partial or careless edits; they are not a
signature (whoever can rewrite a file can rewrite its checksum too). An artifact stored before
``SHA256SUMS`` existed is still served, with a warning that its metadata is unverified: refusing
it would take a running service down on upgrade until someone trains again.

skops and pandas are imported by the functions that need them: the service loads a model from
its scoring spec without either, and importing them costs a good part of a second at start-up.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from typing import TYPE_CHECKING, Iterator

from . import data

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = ".artifacts"
MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
DATA_FILE = "train-data.csv"
SCORER_FILE = "scorer.json"
CHECKSUMS_FILE = "SHA256SUMS"
TEMP_PREFIX = ".tmp-"
TRAIN_LOCK = ".train.lock"
WRITE_LOCK = ".write.lock"
LIBRARIES = ("scikit-learn", "numpy", "pandas", "skops")


class RegistryError(Exception):
    """Base class of registry errors."""


class ModelNotFoundError(RegistryError, LookupError):
    """No artifact exists for the requested name and version."""


class IntegrityError(RegistryError):
    """An artifact was modified, is incomplete or holds types outside the allowlist."""


class RegistryBusyError(RegistryError):
    """Another process (or thread) holds the registry's lock."""


@contextlib.contextmanager
def _file_lock(path: Path, *, wait: bool, busy: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; without ``wait``, raise ``RegistryBusyError``.

    flock(2): locks belong to the open file description, so two opens conflict even within one
    process, and the kernel releases the lock when its holder dies, even by SIGKILL.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RegistryBusyError(busy) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


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


def write_checksums(folder: Path) -> None:
    """Write ``SHA256SUMS`` over every other file of an artifact folder (``sha256sum``'s format).

    ``sha256sum -c SHA256SUMS`` in the folder checks the artifact without this package.
    """
    path = folder / CHECKSUMS_FILE
    path.unlink(missing_ok=True)
    lines = [f"{sha256_bytes(file.read_bytes())}  {file.name}\n"
             for file in sorted(folder.iterdir()) if file.is_file()]
    _write_file(path, "".join(lines).encode("utf-8"))


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
        with self._write_lock(wait=True):
            self._remove_temporary_folders()  # a killed writer's leftovers
            artifact = self._save(skops.io.dumps(estimator), name, version,
                                  training_data=training_data, metadata=metadata,
                                  scorer_spec=scorer_spec)
            self.prune(name, version)
        return artifact

    def _save(self, model_bytes: bytes, name: str, version: str, *,
              training_data: pd.DataFrame, metadata: dict,
              scorer_spec: bytes | None) -> Artifact:
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.artifacts_dir))
        try:
            # mkdtemp makes the folder private; a service running as another user must read it.
            staging.chmod(0o755)
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
            write_checksums(staging)
            final = self._publish(staging, name, version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._swap_link(name, version, final)
        return Artifact(path=final, metadata=metadata)

    @staticmethod
    def _write_metadata(folder: Path, metadata: dict) -> None:
        text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        _write_file(folder / METADATA_FILE, text.encode("utf-8"))

    def _lock(self, name: str, *, wait: bool, busy: str):
        self.root.mkdir(parents=True, exist_ok=True)
        return _file_lock(self.root / name, wait=wait, busy=busy)

    def training_lock(self):
        """Held for a whole training run: a second run, in any process, gets ``RegistryBusyError``.

        Every worker of the service shares the registry, so this is what keeps two training
        runs from going on at once; the lock dies with its holder, even one killed by SIGKILL.
        """
        return self._lock(TRAIN_LOCK, wait=False, busy="a training run is already going on")

    def _write_lock(self, *, wait: bool):
        # Held by each writer while its temporary folder exists (see remove_abandoned).
        return self._lock(WRITE_LOCK, wait=wait, busy="another process is storing a model")

    def _remove_temporary_folders(self) -> list[Path]:
        removed = [entry for entry in self.artifacts_dir.glob(f"{TEMP_PREFIX}*") if entry.is_dir()]
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    def remove_abandoned(self) -> list[Path]:
        """Remove the temporary folders that killed writes left; return them.

        Called when a process starts using the registry (the service at start-up). A folder is
        removed only while no writer holds the write lock, so a write in progress in another
        process keeps its folder.
        """
        if not self.artifacts_dir.is_dir():
            return []
        try:
            with self._write_lock(wait=False):
                return self._remove_temporary_folders()
        except RegistryBusyError:
            return []

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
        """Remove all but the newest ``keep`` folders of a version.

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
    def _read_checksums(folder: Path) -> dict[str, str] | None:
        """The ``SHA256SUMS`` of a folder as {file name: sha256}; None if it has none."""
        path = folder / CHECKSUMS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise IntegrityError(f"{path}: unreadable checksums ({error})") from None
        checksums = {}
        for line in text.splitlines():
            checksum, separator, file_name = line.partition("  ")
            if not separator or len(checksum) != 64:
                raise IntegrityError(f"{path}: not in sha256sum's format: {line[:80]!r}")
            checksums[file_name] = checksum
        return checksums

    @classmethod
    def _read_metadata(cls, folder: Path, name: str, version: str) -> dict:
        path = folder / METADATA_FILE
        checksums = cls._read_checksums(folder)
        if checksums is None:
            logger.warning("%s has no %s (stored by an older version): its metadata is not "
                           "verified; train it again to add one", folder, CHECKSUMS_FILE)
            payload = cls._read_bytes(path)
        else:
            payload = cls._read_verified(path, checksums.get(METADATA_FILE), CHECKSUMS_FILE)
        try:
            metadata = json.loads(payload)
        except ValueError as error:
            raise IntegrityError(f"{path}: unreadable metadata ({error})") from None
        if not isinstance(metadata, dict) or (metadata.get("name"), metadata.get("version")) != (
            name, version
        ):
            raise IntegrityError(f"{path}: metadata does not describe {name} {version}")
        return metadata

    @staticmethod
    def _read_bytes(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as error:
            raise IntegrityError(f"{path}: cannot read the file ({error.strerror})") from None

    @classmethod
    def _read_verified(cls, path: Path, expected: str | None, source: str = "metadata") -> bytes:
        payload = cls._read_bytes(path)
        actual = sha256_bytes(payload)
        if actual != expected:
            raise IntegrityError(
                f"{path}: checksum mismatch ({source} says {expected}, file is {actual}); "
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
