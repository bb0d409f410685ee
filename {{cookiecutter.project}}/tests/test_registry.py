"""The registry: atomic, versioned, checksummed artifacts that refuse to load when tampered."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from {{ cookiecutter.package }} import data, loading, registry, training
from {{ cookiecutter.package }}.registry import (
    IntegrityError, ModelNotFoundError, Registry, RegistryBusyError,
)

TRUSTED = loading.TRUSTED_TYPES


@pytest.fixture(scope="module")
def frame():
    return data.make_default_dataset(200, seed=3)


@pytest.fixture(scope="module")
def fitted(frame):
    pipeline = training.build_pipeline(LogisticRegression())
    return pipeline.fit(frame[data.FEATURES], frame[data.TARGET])


@pytest.fixture
def store(tmp_path):
    return Registry(tmp_path / "registry", keep=2)


def save(store, fitted, frame, version="0.1", note="first"):
    return store.save("model", version, estimator=fitted, training_data=frame,
                      metadata={"note": note})


def test_saved_model_loads_and_predicts_the_same(store, fitted, frame):
    save(store, fitted, frame)
    loaded, _ = store.load("model", "0.1", trusted_types=TRUSTED)
    X = frame[data.FEATURES]
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))


def test_metadata_records_version_note_checksums_and_libraries(store, fitted, frame):
    artifact = save(store, fitted, frame)
    metadata = store.metadata("model", "0.1")
    assert metadata == artifact.metadata
    assert (metadata["name"], metadata["version"], metadata["note"]) == ("model", "0.1", "first")
    assert metadata["artifact_sha256"] == registry.sha256_bytes(
        (artifact.path / registry.MODEL_FILE).read_bytes())
    assert set(metadata["libraries"]) == {"python", "scikit-learn", "numpy", "pandas", "skops"}


def test_artifact_lives_in_an_immutable_folder_behind_a_relative_symlink(store, fitted, frame):
    artifact = save(store, fitted, frame)
    link = store.link("model", "0.1")
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == artifact.path.resolve()
    assert artifact.path.parent.name == registry.ARTIFACTS_DIR
    assert sorted(p.name for p in artifact.path.iterdir()) == [
        registry.CHECKSUMS_FILE, registry.METADATA_FILE, registry.MODEL_FILE, registry.DATA_FILE]


def test_training_data_is_archived_with_the_artifact(store, fitted, frame):
    save(store, fitted, frame)
    assert store.training_data("model", "0.1").equals(frame)


def test_a_new_save_becomes_current(store, fitted, frame):
    save(store, fitted, frame, note="first")
    second = save(store, fitted, frame, note="second")
    assert store.resolve("model", "0.1") == second.path.resolve()
    assert store.metadata("model", "0.1")["note"] == "second"


def test_prune_keeps_the_newest_folders(store, fitted, frame):
    saved = [save(store, fitted, frame, note=str(i)) for i in range(4)]
    remaining = sorted(p for p in store.artifacts_dir.iterdir())
    assert remaining == [a.path for a in saved[-2:]]


def test_prune_never_removes_a_current_folder(store, fitted, frame):
    first = save(store, fitted, frame, version="0.1")
    store.link("model", "0.1").rename(store.root / "pinned-0.1")  # another link keeps it
    for _ in range(3):
        save(store, fitted, frame, version="0.1")
    assert first.path.is_dir()


def test_a_killed_writes_temporary_folder_is_removed_when_the_registry_opens(
        store, fitted, frame):
    save(store, fitted, frame)
    killed = store.artifacts_dir / ".tmp-killed"
    killed.mkdir()
    (killed / registry.MODEL_FILE).write_bytes(b"partial")
    assert store.remove_abandoned() == [killed]
    assert not killed.exists()
    assert store.metadata("model", "0.1")["note"] == "first"


def test_a_write_in_progress_keeps_its_temporary_folder(store, fitted, frame):
    save(store, fitted, frame)
    writing = store.artifacts_dir / ".tmp-writing"
    writing.mkdir()
    with store._write_lock(wait=False):  # as another process's save() holds it
        assert Registry(store.root).remove_abandoned() == []
    assert writing.is_dir()


def test_the_next_save_removes_a_killed_writes_temporary_folder(store, fitted, frame):
    save(store, fitted, frame)
    killed = store.artifacts_dir / ".tmp-killed"
    killed.mkdir()
    save(store, fitted, frame)
    assert not killed.exists()


def test_an_empty_registry_has_nothing_abandoned(store):
    assert store.remove_abandoned() == []


def test_only_one_training_run_holds_the_registry_across_processes(store):
    script = ("import sys, time; from {{ cookiecutter.package }}.registry import Registry; "
              "lock = Registry(sys.argv[1]).training_lock(); lock.__enter__(); "
              "print('locked', flush=True); time.sleep(60)")
    # The with block closes the pipe and waits for the killed holder.
    with subprocess.Popen([sys.executable, "-c", script, str(store.root)],
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(RegistryBusyError, match="already going on"):
                with store.training_lock():
                    pass  # pragma: no cover - the lock is held by the other process
        finally:
            holder.kill()
    with store.training_lock():  # the lock died with its holder (SIGKILL)
        pass


def test_two_threads_cannot_train_at_once(store):
    entered, release, outcomes = threading.Event(), threading.Event(), []

    def first():
        with store.training_lock():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    entered.wait(10)
    try:
        with Registry(store.root).training_lock():
            outcomes.append("trained")  # pragma: no cover - refused
    except RegistryBusyError:
        outcomes.append("refused")
    release.set()
    thread.join()
    assert outcomes == ["refused"]


def test_prune_of_an_empty_registry_does_nothing(store):
    assert store.prune("model", "0.1") == []


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep"):
        Registry(tmp_path, keep=0)


def test_versions_are_listed_in_numeric_order(store, fitted, frame):
    for version in ("0.10", "0.2", "1.0"):
        save(store, fitted, frame, version=version)
    assert store.versions("model") == ["0.2", "0.10", "1.0"]
    assert store.versions("test-model") == []


def test_missing_model_is_reported(store):
    with pytest.raises(ModelNotFoundError, match="no model version 0.1"):
        store.load("model", "0.1", trusted_types=TRUSTED)


def test_dangling_link_is_reported(store, fitted, frame):
    artifact = save(store, fitted, frame)
    for path in artifact.path.iterdir():
        path.unlink()
    artifact.path.rmdir()
    with pytest.raises(ModelNotFoundError, match="missing artifact folder"):
        store.metadata("model", "0.1")


def test_tampered_model_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    path = artifact.path / registry.MODEL_FILE
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="checksum mismatch .* refusing to load it"):
        store.load("model", "0.1", trusted_types=TRUSTED)


def test_tampered_training_data_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    path = artifact.path / registry.DATA_FILE
    path.write_text(path.read_text().replace("singapore", "united_states", 1))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        store.training_data("model", "0.1")


def test_unreadable_model_file_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    (artifact.path / registry.MODEL_FILE).unlink()
    with pytest.raises(IntegrityError, match="cannot read the file"):
        store.load("model", "0.1", trusted_types=TRUSTED)


def test_corrupt_metadata_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    (artifact.path / registry.METADATA_FILE).write_text("{not json")
    registry.write_checksums(artifact.path)  # even with a matching checksum
    with pytest.raises(IntegrityError, match="unreadable metadata"):
        store.load("model", "0.1", trusted_types=TRUSTED)


def test_metadata_of_another_version_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    path = artifact.path / registry.METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": "9.9"}))
    registry.write_checksums(artifact.path)
    with pytest.raises(IntegrityError, match="does not describe model 0.1"):
        store.metadata("model", "0.1")


def test_edited_metadata_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    path = artifact.path / registry.METADATA_FILE
    path.write_text(path.read_text().replace('"note": "first"', '"note": "better"'))
    with pytest.raises(IntegrityError, match=r"metadata.json: checksum mismatch \(SHA256SUMS"):
        store.metadata("model", "0.1")
    with pytest.raises(IntegrityError, match="metadata.json: checksum mismatch"):
        store.scorer_spec("model", "0.1")


def test_every_file_of_an_artifact_is_in_its_checksums_file(store, fitted, frame):
    artifact = save(store, fitted, frame)
    lines = (artifact.path / registry.CHECKSUMS_FILE).read_text().splitlines()
    listed = {name: digest for digest, name in (line.split("  ") for line in lines)}
    files = {p.name for p in artifact.path.iterdir()} - {registry.CHECKSUMS_FILE}
    assert set(listed) == files
    assert all(listed[name] == registry.sha256_bytes((artifact.path / name).read_bytes())
               for name in files)


def test_a_malformed_checksums_file_is_refused(store, fitted, frame):
    artifact = save(store, fitted, frame)
    (artifact.path / registry.CHECKSUMS_FILE).write_text("not a checksum line\n")
    with pytest.raises(IntegrityError, match="not in sha256sum's format"):
        store.metadata("model", "0.1")


def test_an_artifact_stored_before_checksums_files_loads_with_a_warning(
        store, fitted, frame, caplog):
    artifact = save(store, fitted, frame)
    (artifact.path / registry.CHECKSUMS_FILE).unlink()
    assert store.metadata("model", "0.1")["note"] == "first"
    assert "its metadata is not verified" in caplog.text


def test_types_outside_the_allowlist_are_refused(store, frame):
    forest = training.build_pipeline(RandomForestClassifier(n_estimators=3, random_state=0))
    forest.fit(frame[data.FEATURES], frame[data.TARGET])
    save(store, forest, frame)
    with pytest.raises(IntegrityError, match=r"outside the allowlist: sklearn\.\w+"):
        store.load("model", "0.1", trusted_types=frozenset())
    loaded, _ = store.load("model", "0.1", trusted_types=TRUSTED)
    assert loaded.predict(frame[data.FEATURES]).shape == (len(frame),)


def test_a_different_scikit_learn_version_is_warned_about(store, fitted, frame, caplog,
                                                          monkeypatch):
    save(store, fitted, frame)
    monkeypatch.setattr(registry, "library_versions", lambda: {"scikit-learn": "0.0"})
    store.load("model", "0.1", trusted_types=TRUSTED)
    assert "was trained with scikit-learn" in caplog.text


def test_interrupted_write_leaves_the_previous_version(store, fitted, frame, monkeypatch):
    save(store, fitted, frame, note="previous")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(Registry, "_write_metadata", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        save(store, fitted, frame, note="interrupted")
    monkeypatch.undo()
    _, artifact = store.load("model", "0.1", trusted_types=TRUSTED)
    assert artifact.metadata["note"] == "previous"
    assert [p.name for p in store.artifacts_dir.iterdir()] == [artifact.path.name]


def test_failed_link_swap_leaves_the_previous_version(store, fitted, frame, monkeypatch):
    save(store, fitted, frame, note="previous")

    def crash(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(registry.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save(store, fitted, frame, note="new")
    monkeypatch.undo()
    assert store.metadata("model", "0.1")["note"] == "previous"
    assert [p.name for p in store.root.iterdir() if p.name.endswith(".tmp")] == []
