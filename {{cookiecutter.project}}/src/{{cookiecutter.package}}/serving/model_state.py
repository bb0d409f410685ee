"""The model the service serves: loaded at startup, reloaded whenever the registry changes.

Every worker process follows the registry on its own: ``changed`` compares the version's
symlink with the one the loaded model came from (one ``readlink``, on a timer, never on the
request path), so a model trained by any worker, or by the CLI next to the service, is served
by all of them within ``MODEL_RELOAD_SECONDS``.
"""

import asyncio
import logging
import os
from pathlib import Path

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from .. import loading, logs, scoring
from ..config import Settings
from ..registry import IntegrityError, ModelNotFoundError, Registry, RegistryError, artifact_name
from .metrics import Metrics

logger = logging.getLogger(__name__)


class ModelState:
    """The served model: loaded at startup, reloaded on change, checked for readiness.

    ``problem`` says, for any client, why no model is served; the full error (paths,
    checksums) goes to the server's log only. ``log_problem`` is set while the predict log
    cannot be written: predictions are refused then, and the service reports not ready.
    """

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.loaded: scoring.LoadedModel | None = None
        self.problem = "not loaded yet"
        self.log_problem: str | None = None
        self.link = Registry(settings.registry_dir).link(artifact_name(False), settings.version)
        self.target: str | None = None  # where the link pointed at the last load
        self._logged_error = ""

    def _link_target(self) -> str | None:
        try:
            return os.readlink(self.link)
        except OSError:
            return None

    def changed(self) -> bool:
        """Whether the registry's current artifact is another than the last one loaded."""
        return self._link_target() != self.target

    def load(self) -> bool:
        """Load and self-check the configured version; keep the current one on failure."""
        self.target = self._link_target()
        try:
            loaded = loading.load_model(self.settings)
        except RegistryError as error:
            if str(error) != self._logged_error:  # once, not at every readiness probe
                logger.warning("no model to serve: %s", error)
                self._logged_error = str(error)
            self.problem = self._public_reason(error)
            return False
        if not loaded.self_check():
            self.problem = "the model's self-check prediction failed"
            return False
        self.loaded, self.problem, self._logged_error = loaded, "", ""
        self.metrics.served(loaded)
        logger.info("serving %s version %s from %s", loaded.name, loaded.version, loaded.path)
        return True

    def _public_reason(self, error: RegistryError) -> str:
        # No paths or checksums for clients: the server's log has the details.
        version = self.settings.version
        if isinstance(error, ModelNotFoundError):
            return f"model version {version} is not in the registry: train it first"
        if isinstance(error, IntegrityError):
            # Its message starts with the file's path: the file's name alone is said here.
            file_name = Path(str(error).split(": ", 1)[0]).name
            return (f"model version {version} failed its integrity check ({file_name}); "
                    "the server's log says why")
        return f"model version {version} cannot be loaded; the server's log says why"

    async def follow_registry(self) -> None:
        """Reload whenever the registry's current artifact changes (run as a background task)."""
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            try:
                if self.changed():
                    await run_in_threadpool(self.load)
            except Exception:  # logged; the next round tries again
                logger.exception("checking the registry for a new model failed")

    def require(self) -> scoring.LoadedModel:
        """The loaded model, or a 503 naming why there is none."""
        if self.loaded is None:
            raise HTTPException(503, f"no model is loaded: {self.problem}")
        return self.loaded

    def log_failed(self, error: logs.LogWriteError) -> None:
        """Count a failed append to the predict log; log the first of an episode only."""
        self.metrics.log_write_errors.inc()
        if self.log_problem is None:
            logger.error("cannot write the predict log %s (%s): predictions are refused with "
                         "503 and /ready says not ready until it can be written",
                         error.filename, error.strerror)
        self.log_problem = f"the predict log cannot be written ({error.strerror})"

    def log_recovered(self) -> None:
        """End an episode of log failures."""
        if self.log_problem is not None:
            logger.warning("the predict log can be written again: predictions resume")
            self.log_problem = None

    def check_log(self) -> None:
        """While the log is failing, whether it can be written again (for readiness)."""
        try:
            logs.check_writable(self.settings.log_dir, "predict")
        except logs.LogWriteError as error:
            self.log_problem = f"the predict log cannot be written ({error.strerror})"
        else:
            self.log_recovered()
