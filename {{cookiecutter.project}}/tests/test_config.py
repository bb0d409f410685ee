"""Settings: read from MODEL_* variables, validated once."""

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package }}.config import Settings


def test_defaults_match_the_documentation(settings):
    assert settings.version == "0.1"
    assert settings.data_path is None and settings.admin_token is None
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.log_inputs is True
    assert settings.reload_seconds == 2.0


def test_values_come_from_model_variables(monkeypatch):
    monkeypatch.setenv("MODEL_VERSION", "1.2")
    monkeypatch.setenv("MODEL_PORT", "9000")
    monkeypatch.setenv("MODEL_ADMIN_TOKEN", "s3cret")
    settings = Settings()
    assert (settings.version, settings.port) == ("1.2", 9000)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_blank_admin_token_keeps_the_admin_endpoints_off(monkeypatch):
    monkeypatch.setenv("MODEL_ADMIN_TOKEN", "  ")
    assert Settings().admin_token is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("version", "latest"), ("version", "1"), ("version_note", ""), ("port", 0),
     ("workers", 0), ("max_batch_rows", 0), ("max_body_bytes", 10), ("reload_seconds", 0)],
)
def test_invalid_values_are_refused(name, value):
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})


def test_settings_are_immutable(settings):
    with pytest.raises(ValidationError):
        settings.version = "9.9"
