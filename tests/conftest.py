"""Fixtures for the template's tests: baked projects, an installed project, Docker.

- ``bake(**answers)``: generate a project into a fresh folder, return its path.
- ``project_env``: the default project, baked once per session with
  ``make install`` done; its virtual environment is ``project_env / ".venv"``.
- ``docker_required`` (fixture) or ``@pytest.mark.docker``: a Docker client.
  Without Docker, the test skips and says why; in CI (``CI=true``) it fails,
  because a CI run whose Docker tests skipped proves nothing.
"""

import functools
import itertools
import os
import sys

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
    except Exception as error:  # the SDK raises several unrelated types
        return f"no Docker daemon answers ({error.__class__.__name__}: {error})"
    return None


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


def pytest_runtest_setup(item):
    """Apply the Docker rule to tests marked ``@pytest.mark.docker``."""
    if item.get_closest_marker("docker"):
        require_docker()
