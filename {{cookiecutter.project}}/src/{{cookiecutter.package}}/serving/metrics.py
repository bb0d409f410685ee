"""The service's Prometheus metrics: requests, latency, predictions, log write errors, version."""

import collections

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import scoring


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency by endpoint and status.",
            ["endpoint", "method", "status"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.predictions = Counter(
            "model_predictions", "Predicted rows by class and model version.",
            ["model_version", "prediction"], registry=self.registry,
        )
        self.log_write_errors = Counter(
            "model_log_write_errors",
            "Appends to the predict log that failed; their requests were refused with 503.",
            registry=self.registry,
        )
        self._series: dict[tuple, tuple] = {}
        self._predicted: dict[tuple, Counter] = {}
        self.info = Gauge(
            "model_info", "1 for the model version being served.",
            ["model_version", "name"], registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count a request and its latency."""
        key = (endpoint, method, status)
        series = self._series.get(key)
        if series is None:  # the labelled children are looked up once per combination
            labels = (endpoint, method, str(status))
            series = self._series[key] = (self.requests.labels(*labels),
                                          self.latency.labels(*labels))
        series[0].inc()
        series[1].observe(seconds)

    def predicted(self, model_version: str, labels: list[int]) -> None:
        """Count a batch's predicted rows by class: one increment per class, not per row."""
        for label, count in collections.Counter(labels).items():
            key = (model_version, label)
            child = self._predicted.get(key)
            if child is None:
                child = self._predicted[key] = self.predictions.labels(model_version,
                                                                       str(label))
            child.inc(count)

    def served(self, loaded: scoring.LoadedModel) -> None:
        """Mark ``loaded`` as the served version."""
        self.info.clear()
        self.info.labels(loaded.version, loaded.name).set(1)
