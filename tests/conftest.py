"""Fixtures for the template's tests: baked projects, an installed project, Docker.

- ``bake(**answers)``: generate a project into a fresh folder, return its path.
- ``project_env``: the default project, baked once per session with
  ``make install`` done; its virtual environment is ``project_env / ".venv"``.
- ``docker_required`` (fixture) or ``@pytest.mark.docker``: a Docker client.
  Without Docker, the test skips and says why; in CI (``CI=true``) it fails,
  because a CI run whose Docker tests skipped proves nothing.
"""

import functools
import importlib.util
import itertools
import os
import sys
import threading
import time

import pytest

import baking
import commands


@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory):
    """A cookiecutter config that keeps replay files and clones out of ``~``."""
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {home / 'cookiecutters'}\n"
        f"replay_dir: {home / 'replay'}\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def bake(tmp_path, cookiecutter_config):
    """Return ``bake(**answers) -> Path``: generate a project, return its folder."""
    bakes = itertools.count()

    def bake_project(**answers):
        output_dir = tmp_path / f"bake-{next(bakes)}"
        return baking.bake(output_dir, answers, config_file=cookiecutter_config)

    return bake_project


@pytest.fixture(scope="session")
def project_env(tmp_path_factory, cookiecutter_config):
    """The default project, baked once, with ``make install`` done.

    Its environment is made from the suite's own interpreter, which the
    template's Makefile guarantees to be new enough (3.11 or newer).
    """
    output_dir = tmp_path_factory.mktemp("default-project")
    project_dir = baking.bake(output_dir, config_file=cookiecutter_config)
    commands.run(["make", "install", f"PYTHON={sys.executable}"], cwd=project_dir)
    return project_dir


def load_module(path, name):
    """Import a Python file of the template (a script, an unrendered hook) as module ``name``.

    It is registered in ``sys.modules`` first, as an import would do, so that what needs its
    module at definition time (dataclasses) works; nothing under ``__main__`` runs.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def in_ci():
    """Return True when running in CI, where every layer of the suite must run."""
    return os.environ.get("CI", "").lower() == "true"


@functools.cache
def docker_problem():
    """Return why Docker cannot be used here, or None when a daemon answers."""
    try:
        import docker
    except ImportError:
        return "the Python package 'docker' is not installed"
    try:
        docker.from_env().ping()
    except Exception:  # the SDK raises several unrelated types; the reason is the same
        return no_daemon_message(os.environ.get("DOCKER_HOST"))
    return None


def no_daemon_message(docker_host):
    """Say that no Docker daemon answers, where it was asked, and what to do: in words,
    as the quick start does, not as the SDK's exception chain."""
    where = docker_host or "unix:///var/run/docker.sock"
    return (f"no Docker daemon answers at {where} (start one, or point DOCKER_HOST at it; "
            "`docker info` says more)")


def require_docker():
    """Fail in CI, skip elsewhere, when Docker is not available."""
    problem = docker_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"Docker is required in CI (CI=true) but {problem}", pytrace=False)
    pytest.skip(f"Docker tests skipped: {problem}")


@pytest.fixture(scope="session")
def docker_required():
    """A Docker client; skips (or fails, in CI) when Docker is not available."""
    require_docker()
    import docker

    return docker.from_env()


def unavailable(reason):
    """Fail in CI, skip elsewhere: the same rule as for Docker itself."""
    if in_ci():
        pytest.fail(f"required in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def base_image(docker_required):
    """The Python base image: ``BASE_IMAGE``, or the template's script's (built when missing)."""
    from image_builds import air_gapped_base

    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    try:
        return air_gapped_base()
    except RuntimeError as error:
        unavailable(str(error))


# `make test` spreads the suite over CPUs with pytest-xdist (--dist loadgroup).
# A module's tests share module-scoped fixtures (the 64 bakes, the built
# images), so each module runs on one worker; the generated-project runs are
# independent and the slowest, so each of them may go to any worker.
SPREAD_MODULES = {"test_generated_project.py"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Group each module's tests for pytest-xdist, except the spread modules."""
    for item in items:
        if item.path.name not in SPREAD_MODULES and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.path.name))


class ProgressHeartbeat:
    """On the controller of a distributed run: a line every ``interval`` seconds of silence.

    Under pytest-xdist, ``-v`` prints a test when it starts and when it ends, and a project's
    install, lint and test, or an image build, takes minutes in between. This plugin keeps
    the tests that are running and, when nothing was printed for ``interval`` seconds, says
    which ones are still at work and for how long.
    """

    def __init__(self, config, interval=60.0):
        self.config = config
        self.interval = interval
        self.began = time.monotonic()
        self.running = {}
        self.last_output = self.began
        self.lock = threading.Lock()  # the terminal is written from two threads
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="progress", daemon=True)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logstart(self, nodeid, location):
        """Note that a test started (the terminal reporter prints it under the lock)."""
        with self.lock:
            self.running[nodeid] = time.monotonic()
            self.last_output = time.monotonic()
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report):
        """Note that a test ended after its teardown."""
        with self.lock:
            if report.when == "teardown":
                self.running.pop(report.nodeid, None)
            self.last_output = time.monotonic()
            return (yield)

    def pytest_sessionstart(self, session):
        """Start the heartbeat thread."""
        self.thread.start()

    def pytest_sessionfinish(self, session):
        """Stop the heartbeat thread."""
        self.stopped.set()

    def beat(self):
        """Every few seconds, write the progress line when the terminal was quiet long enough."""
        while not self.stopped.wait(min(self.interval, 5.0)):
            with self.lock:
                now = time.monotonic()
                if self.running and now - self.last_output >= self.interval:
                    reporter = self.config.pluginmanager.get_plugin("terminalreporter")
                    if reporter is not None:
                        reporter.write_line(progress_line(now - self.began, self.running, now))
                        self.last_output = now


def progress_line(elapsed, running, now):
    """Return e.g. "... 6 min in; running: tests/x.py::a (4 min), tests/y.py::b (1 min)"."""
    tests = ", ".join(
        f"{nodeid} ({(now - started) / 60:.0f} min)"
        for nodeid, started in sorted(running.items(), key=lambda item: item[1])
    )
    return f"... {elapsed / 60:.0f} min in; still running: {tests}"


def pytest_configure(config):
    """Add the heartbeat on the controller of a distributed run (not on its workers)."""
    distributed = config.getoption("dist", default="no") != "no"
    if distributed and not hasattr(config, "workerinput"):
        config.pluginmanager.register(ProgressHeartbeat(config), "progress-heartbeat")


def pytest_runtest_setup(item):
    """Apply the Docker rule to tests marked ``@pytest.mark.docker``."""
    if item.get_closest_marker("docker"):
        require_docker()
