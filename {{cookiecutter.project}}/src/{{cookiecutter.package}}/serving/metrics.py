"""The service's Prometheus metrics: requests, latency, predictions, log write errors, version."""

import bisect
import itertools
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .. import scoring

REQUEST_LABELS = ("endpoint", "method", "status")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class RequestMetrics(Collector):
    """``http_requests_total`` and the ``http_request_duration_seconds`` histogram.

    The same series a prometheus_client ``Counter`` and ``Histogram`` with these labels and
    buckets expose, kept as plain counts: those take a lock and walk the buckets in Python on
    every request, a measurable share of a request that costs about 100 us in all. Every
    request is observed on the event loop's thread and scraped there too (``/metrics`` is a
    coroutine), so the counts need no lock; the families are built at scrape time, through
    the library's custom-collector interface
    (https://prometheus.github.io/client_python/collector/custom/).
    """

    def __init__(self, registry: CollectorRegistry):
        # (endpoint, method, status) -> [count, sum of seconds, created, per-bucket counts]
        self._series: dict[tuple[str, str, int], list] = {}
        registry.register(self)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count a request and its latency."""
        series = self._series.get((endpoint, method, status))
        if series is None:
            series = self._series[(endpoint, method, status)] = [
                0, 0.0, time.time(), [0] * (len(LATENCY_BUCKETS) + 1)]
        series[0] += 1
        series[1] += seconds
        # A bucket counts the latencies up to its bound (le); the last one is +Inf.
        series[3][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        """The two families, as prometheus_client's own Counter and Histogram write them."""
        requests = CounterMetricFamily("http_requests",
                                       "HTTP requests by endpoint, method and status.",
                                       labels=REQUEST_LABELS)
        latency = HistogramMetricFamily("http_request_duration_seconds",
                                        "HTTP request latency by endpoint and status.",
                                        labels=REQUEST_LABELS)
        bounds = [floatToGoString(bound) for bound in (*LATENCY_BUCKETS, float("inf"))]
        for (endpoint, method, status), (count, seconds, created, buckets) in list(
                self._series.items()):
            labels = [endpoint, method, str(status)]
            requests.add_metric(labels, count, created=created)
            latency.add_metric(labels, list(zip(bounds, itertools.accumulate(buckets))),
                               seconds)
            latency.samples.append(Sample("http_request_duration_seconds_created",
                                          dict(zip(REQUEST_LABELS, labels)), created))
        yield requests
        yield latency


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics(self.registry)
        self.predictions = Counter(
            "model_predictions", "Predicted rows by class and model version.",
            ["model_version", "prediction"], registry=self.registry,
        )
        self.log_write_errors = Counter(
            "model_log_write_errors",
            "Appends to the predict log that failed; their requests were refused with 503.",
            registry=self.registry,
        )
        self._predicted: dict[tuple, Counter] = {}
        self.info = Gauge(
            "model_info", "1 for the model version being served.",
            ["model_version", "name"], registry=self.registry,
        )

    def predicted(self, model_version: str, labels: list[int]) -> None:
        """Count a batch's predicted rows by class: one increment per class, not per row."""
        counts: dict[int, int] = {}
        for label in labels:  # a plain loop: collections.Counter costs more for a few labels
            counts[label] = counts.get(label, 0) + 1
        for label, count in counts.items():
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
