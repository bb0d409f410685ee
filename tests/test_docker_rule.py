"""The suite's Docker rule: without Docker, skip and say why; in CI, fail."""

import re

import pytest

import conftest

NO_DAEMON = "no Docker daemon answers (ConnectionError: refused)"


@pytest.fixture
def docker_missing(monkeypatch):
    monkeypatch.setattr(conftest, "docker_problem", lambda: NO_DAEMON)


def test_missing_docker_fails_in_ci(docker_missing, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Docker is required in CI"):
        conftest.require_docker()


def test_missing_docker_skips_elsewhere_with_the_reason(docker_missing, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(NO_DAEMON)):
        conftest.require_docker()


def test_available_docker_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setattr(conftest, "docker_problem", lambda: None)
    monkeypatch.setenv("CI", "true")
    conftest.require_docker()


def test_a_missing_daemon_is_named_in_words_not_as_an_exception(monkeypatch, tmp_path):
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    problem = conftest.docker_problem.__wrapped__()
    assert problem == conftest.no_daemon_message(f"unix://{tmp_path}/no-daemon.sock")
    assert "Exception" not in problem and "Error" not in problem
