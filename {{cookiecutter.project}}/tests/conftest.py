"""Shared fixtures: every test runs in a temporary directory with its own registry and logs."""

import http.server
import os
import shutil
import threading
import time
from collections.abc import Callable

import pytest
from sklearn.linear_model import LogisticRegression

from {{ cookiecutter.package }} import data, loading, logs, training
from {{ cookiecutter.package }}.config import Settings


@pytest.fixture(scope="session", autouse=True)
def clean_environment():
    """No test sees the caller's MODEL_* variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MODEL_"):
                patch.delenv(name)
        yield


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path, monkeypatch):
    """Point the registry and the logs at a temporary directory and work from there."""
    monkeypatch.setenv("MODEL_REGISTRY_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODEL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def production_paths(pytestconfig):
    """Where production models and logs go: the defaults, relative to the project root."""
    return [pytestconfig.rootpath / "models", pytestconfig.rootpath / "logs"]


@pytest.fixture
def settings():
    """Settings read from the isolated environment."""
    return Settings()


@pytest.fixture(scope="session")
def small_dataset():
    """A small sample of the default data set: enough to train on, quick to train."""
    return data.make_default_dataset(n_rows=300, seed=7)


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory, small_dataset):
    """A registry holding a test-mode model, trained once for the whole session."""
    root = tmp_path_factory.mktemp("trained")
    training.train(Settings(registry_dir=root / "models", log_dir=root / "logs"), small_dataset,
                   test_mode=True)
    return root / "models"


@pytest.fixture
def quick_training(monkeypatch):
    """Only one candidate, for tests about what surrounds training rather than the comparison."""
    monkeypatch.setattr(training, "candidate_models",
                        lambda seed=training.SEED: {"logistic_regression": LogisticRegression()})


@pytest.fixture
def trained_settings(trained_registry, settings):
    """Settings whose registry is a private copy of the trained one (tests may tamper)."""
    shutil.copytree(trained_registry, settings.registry_dir, symlinks=True)
    return settings


@pytest.fixture(scope="session")
def served_registry(tmp_path_factory, small_dataset):
    """A registry holding a model under its production name (what the service serves)."""
    root = tmp_path_factory.mktemp("served")
    training.train(Settings(registry_dir=root / "models", log_dir=root / "logs"), small_dataset)
    return root / "models"


@pytest.fixture
def served_settings(served_registry, settings):
    """Settings whose temporary registry holds a private copy of the served model."""
    shutil.copytree(served_registry, settings.registry_dir, symlinks=True)
    return settings


@pytest.fixture
def loaded(trained_settings):
    """The trained test-mode model, loaded and verified."""
    return loading.load_pipeline(trained_settings, test_mode=True)


@pytest.fixture
def http_server():
    """Return ``start(handler) -> server``: an ``http.server`` on a free local port, answered
    from a thread; every server started is shut down and closed after the test."""
    servers = []

    def start(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.HTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def status_server(http_server):
    """Return ``start(status) -> base URL``: a keep-alive HTTP/1.1 server that answers every
    GET and POST with ``{}`` and the status ``status(body)`` chooses for the request's body
    (empty for a GET)."""

    def start(status: Callable[[bytes], int]) -> str:
        class Answers(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status(body))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = answer  # the names http.server calls

            def log_message(self, *args):
                pass

        return f"http://127.0.0.1:{http_server(Answers).server_address[1]}"

    return start


@pytest.fixture
def writes_and_opens(monkeypatch):
    """The threads that wrote to and opened log files, in order: (kind, thread id)."""
    seen: list[tuple[str, int]] = []
    real_write, real_open = logs._locked_write, logs._open_for_append

    def write(fd, payload, **options):
        seen.append(("write", threading.get_ident()))
        real_write(fd, payload, **options)

    def open_file(path):
        seen.append(("open", threading.get_ident()))
        return real_open(path)

    monkeypatch.setattr(logs, "_locked_write", write)
    monkeypatch.setattr(logs, "_open_for_append", open_file)
    return seen


@pytest.fixture
def no_slow_writes(monkeypatch):
    """No write counts as slow: a busy test machine can stall one for longer than 10 ms."""
    monkeypatch.setattr(logs, "SLOW_WRITE_SECONDS", 60.0)


@pytest.fixture
def slow_log_writes(monkeypatch):
    """Every log write takes 20 ms longer: lines queue up behind the one being written."""
    real_write = logs._locked_write

    def slow_write(fd, payload, **options):
        time.sleep(0.02)
        real_write(fd, payload, **options)

    monkeypatch.setattr(logs, "_locked_write", slow_write)
