"""Settings: one validated object read from ``MODEL_*`` environment variables.

Read it once at an entry point (``Settings()`` in the CLI or the service) and pass it on;
nothing in the package reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of training, prediction, serving and monitoring."""

    model_config = SettingsConfigDict(env_prefix="MODEL_", extra="ignore", frozen=True)

    version: str = Field(
        "0.1",
        pattern=r"^\d+(\.\d+){1,2}$",
        description="Model version, part of the artifact's name and of every log line.",
    )
    version_note: str = Field(
        "baseline: the embedded AAVAIL churn data set",
        min_length=1,
        max_length=500,
        description="Free text that says what changed in this version.",
    )
    registry_dir: Path = Field(Path("models"), description="Where versioned artifacts live.")
    log_dir: Path = Field(Path("logs"), description="Where train and predict logs are written.")
    data_path: Path | None = Field(
        None, description="Training data CSV; unset means the embedded default data set."
    )
    admin_token: SecretStr | None = Field(
        None, description="Enables the train and logs endpoints; unset keeps them off."
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address the service binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the service listens on.")
    workers: int = Field(1, ge=1, le=64, description="Service worker processes.")
    max_batch_rows: int = Field(10_000, ge=1, description="Largest batch one request may send.")
    max_body_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="Largest request body the service accepts."
    )
    reload_seconds: float = Field(
        2.0, gt=0, le=3600,
        description="How often each service worker checks the registry for a newly trained model.",
    )
    log_inputs: bool = Field(
        True, description="Write the feature values of each prediction to the predict log."
    )
    # Drift monitoring (see monitoring.py).
    monitor_alpha: float = Field(
        0.01, gt=0, lt=0.5,
        description="False-alarm level of the drift check: the probability that traffic "
                    "from the training distribution fails it.",
    )
    monitor_min_rows: int = Field(
        20, ge=2,
        description="Fewer logged rows than this in the window give 'not enough data'.",
    )

    @field_validator("admin_token")
    @classmethod
    def _token_is_not_blank(cls, token: SecretStr | None) -> SecretStr | None:
        # An empty variable (MODEL_ADMIN_TOKEN=) must not switch the admin endpoints on.
        if token is not None and not token.get_secret_value().strip():
            return None
        return token
