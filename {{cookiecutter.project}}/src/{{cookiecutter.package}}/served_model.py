"""The model the service serves: loaded at startup, reloaded after training."""

import asyncio
import logging

from fastapi import HTTPException

from . import scoring
from .config import Settings
from .metrics import Metrics
from .registry import RegistryError

logger = logging.getLogger(__name__)


class ModelState:
    """The served model: loaded at startup, reloaded after training, checked for readiness."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.loaded: scoring.LoadedModel | None = None
        self.problem = "not loaded yet"
        self.training = asyncio.Lock()

    def load(self) -> bool:
        """Load and self-check the configured version; keep the current one on failure."""
        try:
            loaded = scoring.load_served_model(self.settings)
        except RegistryError as error:
            if str(error) != self.problem:  # once, not at every readiness probe
                logger.warning("no model to serve: %s", error)
            self.problem = str(error)
            return False
        if not loaded.self_check():
            self.problem = "the model's self-check prediction failed"
            return False
        self.loaded, self.problem = loaded, ""
        self.metrics.served(loaded)
        logger.info("serving %s version %s from %s", loaded.name, loaded.version, loaded.path)
        return True

    def require(self) -> scoring.LoadedModel:
        """The loaded model, or a 503 naming why there is none."""
        if self.loaded is None:
            raise HTTPException(503, f"no model is loaded: {self.problem}")
        return self.loaded
