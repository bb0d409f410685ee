"""Serving benchmark: the service under an external load generator, beside its references.

Four servers run the same trained model (``models/``; one is trained into a temporary
registry when there is none), each with one worker process, all pinned to one CPU while the
load generator (``loadgen.py``: wrk, or a documented fallback) runs in its own process on
another CPU (``servers.py``; no pinning where fewer than two CPUs are usable):

- **the service**: ``{{ cookiecutter.project }} serve`` (uvicorn, production settings);
- **the bare-ASGI ceiling**: uvicorn with an app that answers the service's own response
  bytes and does nothing else (``bare_asgi.py``): the most any app on this server can serve;
- **the Flask reference**: Flask on gunicorn sync workers with the service's validation and
  per-record log (``flask_reference.py``);
- **the course-style Flask app**: a DataFrame and the pipeline's ``predict_proba``, as the
  course's reference solutions serve a model (``flask_course.py``).

Before the load, every server but the ceiling must return the same probabilities for the
same records. In process, on the servers' CPU, it times one record through the scorer alone
(the floor no server can beat), the full in-process path (validation, scoring, the log
write: ``scoring.predict``) and the course's DataFrame path.

The load phases (one record at 1 and at 32 connections on each server; batches of 1,000
DISTINCT records generated from the schema, on the service) run in rounds after a discarded
warm-up round; every round runs every phase once, in a rotated order. Each figure is reported
as the median and the range over the rounds, and each ratio is computed within a round (the
phases of a round ran minutes apart at most) and named by its numerator and denominator.

Run: ``make bench`` or ``.venv/bin/python benchmarks/serving.py --help``. Exit status 1 when
a server answered an error or the servers disagreed; missed targets are reported, not failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

import loadgen
from servers import HOST, Placement, Server, Spread, free_port, load_average, post, rotated

from {{ cookiecutter.package }} import data, loading, scoring, training
from {{ cookiecutter.package }}.config import Settings
from {{ cookiecutter.package }}.registry import ModelNotFoundError

HERE = Path(__file__).resolve().parent
TARGET_CEILING_SHARE = 0.6
TARGET_P50_OVER_SCORER_MS = 0.25
TARGET_FLASK_RATIO = 3.5
SCORER_ALONE = "scorer alone: LoadedModel.probabilities, as /predict calls it"
FULL_PATH = "full in-process path: validate, score, log (scoring.predict)"
COURSE_PATH = "course path: DataFrame + pipeline.predict_proba"
AGREEMENT = 1e-9  # the largest difference between two servers' probabilities

SERVICE, CEILING, FLASK, COURSE = ("service", "bare-ASGI ceiling", "Flask reference",
                                   "Flask course-style")


@dataclass(frozen=True)
class Phase:
    """One load: a server, a body and a number of connections."""

    server: str
    body: str  # "record" or "batch"
    connections: int

    def label(self, batch_rows: int) -> str:
        """How the report names it."""
        what = "1 record" if self.body == "record" else f"{batch_rows:,}-record batch"
        return f"{self.server:<19} {what:<20} {self.connections:>3} conn."


def distinct_records(count: int, seed: int = 7) -> list[dict]:
    """``count`` different valid records drawn from the schema's categories and ranges."""
    rng = random.Random(seed)
    records: dict[tuple, dict] = {}
    while len(records) < count:
        record = {}
        for feature in data.SCHEMA.features:
            if isinstance(feature, data.CategoricalFeature):
                record[feature.name] = rng.choice(feature.categories)
            elif feature.integer:
                record[feature.name] = rng.randint(int(feature.minimum), int(feature.maximum))
            else:
                record[feature.name] = rng.uniform(feature.minimum, feature.maximum)
        records[tuple(record.values())] = record
    return list(records.values())


def median_ms(call, seconds: float) -> float:
    """The median time of ``call()`` in milliseconds, over ``seconds`` of repeated calls."""
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[len(timings) // 10:]) * 1e3  # the first tenth warms up


def in_process(settings: Settings, record: dict, seconds: float) -> dict[str, float]:
    """Median milliseconds of one record: the scorer alone, the full path, the course path."""
    import pandas as pd

    served = loading.load_model(settings)
    pipeline = loading.load_pipeline(settings).pipeline
    frame_columns = data.FEATURES
    return {
        SCORER_ALONE: median_ms(lambda: served.probabilities([record]), seconds),
        FULL_PATH: median_ms(
            lambda: scoring.predict(served, record, settings=settings), seconds),
        COURSE_PATH: median_ms(
            lambda: pipeline.predict_proba(pd.DataFrame([record], columns=frame_columns)),
            seconds),
    }


def bench_settings(workdir: Path) -> Settings:
    """Settings with the project's trained model (or a fresh one) and throw-away logs."""
    settings = Settings(log_dir=workdir / "logs")
    try:
        loading.load_pipeline(settings)
    except ModelNotFoundError:
        print(f"no model in {settings.registry_dir}: training one for the benchmark")
        settings = Settings(log_dir=workdir / "logs", registry_dir=workdir / "models")
        training.train(settings)
    return settings


def environment(settings: Settings, port: int) -> dict:
    """The environment of a server process: the model, throw-away logs, one worker."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MODEL_")}
    env.update(MODEL_HOST=HOST, MODEL_PORT=str(port), MODEL_WORKERS="1",
               MODEL_REGISTRY_DIR=str(settings.registry_dir.resolve()),
               MODEL_LOG_DIR=str(settings.log_dir.resolve()), MODEL_VERSION=settings.version)
    return env


def gunicorn(app: str, settings: Settings, cpu: int | None, probe: bytes) -> Server:
    """A Flask app on one gunicorn sync worker."""
    port = free_port()
    return Server(app, [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class",
                        "sync", "--bind", f"{HOST}:{port}", "--chdir", str(HERE),
                        "--log-level", "warning", f"{app}:create_app()"],
                  port, env=environment(settings, port), cpu=cpu, ready_path="/predict",
                  ready_body=probe)


def check_agreement(servers: dict[str, Server], records: list[dict]) -> float:
    """The largest difference between the servers' probabilities for ``records``."""
    body = orjson.dumps({"records": records})
    answers = {name: orjson.loads(post(server.url("/predict"), body))["probabilities"]
               for name, server in servers.items()}
    first = answers[SERVICE]
    return max(abs(a - b) for answer in answers.values() for a, b in zip(first, answer))


def run_rounds(phases: list[Phase], servers: dict[str, Server], bodies: dict[str, bytes],
               placement: Placement, rounds: int, seconds: int,
               warmup: int) -> dict[Phase, list[loadgen.Load]]:
    """Every phase once per round, rotated; a first warm-up round of ``warmup`` s is dropped.

    Each phase starts with the page cache clean (``os.sync``): the log lines the phase before
    wrote (1,000-record batches write tens of MB a second) are flushed between the phases,
    not by the kernel's writeback while the next phase, perhaps another server's, is measured.
    """
    results: dict[Phase, list[loadgen.Load]] = {phase: [] for phase in phases}
    for number in range(rounds + 1):
        for phase in rotated(phases, number):
            os.sync()
            load = loadgen.measure(servers[phase.server].url("/predict"), bodies[phase.body],
                                   phase.connections, warmup if number == 0 else seconds,
                                   placement.generator)
            if number:
                results[phase].append(load)
        print(f"  round {number}/{rounds} done{' (warm-up, dropped)' if not number else ''}; "
              f"{load_average()}", flush=True)
    return results


def per_round(numerators: list[loadgen.Load], denominators: list[loadgen.Load],
              combine) -> tuple[float, ...]:
    """``combine`` applied to the two phases' loads of each round."""
    return tuple(combine(a, b) for a, b in zip(numerators, denominators))


@dataclass(frozen=True)
class Ratio:
    """A ratio (or a difference) of two phases, one value per round, with its target."""

    name: str
    values: tuple[float, ...]
    unit: str  # "x" for a ratio, " ms" for a difference of latencies
    target: float | None = None
    at_least: bool = True

    def describe(self) -> str:
        """The median, the range and, where there is one, the target and the verdict."""
        spread = Spread(self.values)
        text = spread.format(".3f" if self.unit == " ms" else ".2f", self.unit)
        if self.target is None:
            return text
        met = spread.median >= self.target if self.at_least else spread.median <= self.target
        sign = ">=" if self.at_least else "<="
        return f"{text}  target {sign} {self.target:g}{self.unit}: {'MET' if met else 'MISSED'}"


def report(results: dict[Phase, list[loadgen.Load]], floors: dict[str, float],
           connections: int, batch_rows: int) -> None:
    """The table of phases and the ratios, each ratio computed within a round."""
    print(f"\nOver HTTP, median [min-max] of {len(next(iter(results.values())))} rounds:")
    print(f"  {'server':<19} {'load':<30} {'requests/s':>24} {'p50 ms':>22} {'p99 ms':>22}")
    for phase, loads in results.items():
        rate, p50, p99 = (Spread(tuple(getattr(x, name) for x in loads))
                          for name in ("rate", "p50_ms", "p99_ms"))
        rows = (f"  = {Spread(tuple(x.rate * batch_rows for x in loads)).format(',.0f')} "
                "records/s" if phase.body == "batch" else "")
        print(f"  {phase.label(batch_rows)} {rate.format(',.0f'):>24} {p50.format('.3f'):>22} "
              f"{p99.format('.3f'):>22}{rows}")

    service_1, service_n, ceiling_1, ceiling_n, flask_n, course_n, batches = (
        results[Phase(server, body, conns)] for server, body, conns in (
            (SERVICE, "record", 1), (SERVICE, "record", connections), (CEILING, "record", 1),
            (CEILING, "record", connections), (FLASK, "record", connections),
            (COURSE, "record", connections), (SERVICE, "batch", 1)))
    scorer_ms, full_ms = floors[SCORER_ALONE], floors[FULL_PATH]
    n = f"{connections} conn."
    ratios = [
        Ratio(f"service req/s / bare-ASGI req/s, {n} (the share of the server's ceiling)",
              per_round(service_n, ceiling_n, lambda s, c: s.rate / c.rate), "x",
              TARGET_CEILING_SHARE),
        Ratio(f"service req/s / Flask reference req/s, {n}",
              per_round(service_n, flask_n, lambda s, f: s.rate / f.rate), "x",
              TARGET_FLASK_RATIO),
        Ratio(f"service req/s / Flask course-style req/s, {n}",
              per_round(service_n, course_n, lambda s, f: s.rate / f.rate), "x"),
        Ratio("service p50, 1 conn. - scorer alone in process",
              per_round(service_1, service_1, lambda s, _: s.p50_ms - scorer_ms), " ms",
              TARGET_P50_OVER_SCORER_MS, at_least=False),
        Ratio("service p50, 1 conn. - full in-process path",
              per_round(service_1, service_1, lambda s, _: s.p50_ms - full_ms), " ms"),
        Ratio("service p50, 1 conn. - bare-ASGI p50, 1 conn.",
              per_round(service_1, ceiling_1, lambda s, c: s.p50_ms - c.p50_ms), " ms"),
        Ratio(f"{batch_rows:,}-record batches' records/s, 1 conn. / single records' "
              f"records/s, {n}",
              per_round(batches, service_n, lambda b, s: b.rate * batch_rows / s.rate), "x"),
    ]
    print("\nRatios and differences, each computed within a round, median [min-max]:")
    for ratio in ratios:
        print(f"  {ratio.name}\n      {ratio.describe()}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the results; non-zero when a server failed or disagreed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="length of each load phase")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (median of)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="length of each phase of the dropped warm-up round")
    parser.add_argument("--connections", type=int, default=32, help="the concurrent load")
    parser.add_argument("--batch-rows", type=int, default=1000, help="records per batch")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    args = parser.parse_args(argv)
    placement = Placement.choose(pin=not args.no_pin)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        return run(args, placement, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args, placement: Placement, workdir: Path) -> int:
    """The benchmark with its settings chosen."""
    settings = bench_settings(workdir)
    record = dict(data.SCHEMA.example)
    batch = distinct_records(args.batch_rows)
    bodies = {"record": orjson.dumps(record), "batch": orjson.dumps({"records": batch})}
    print(f"Serving benchmark: model {settings.version} from {settings.registry_dir}; one worker "
          f"process per server; load generator {loadgen.generator()} (one thread); "
          f"{args.rounds} rounds of {args.seconds} s per phase after a {args.warmup} s warm-up "
          f"round; phases interleaved.\n  CPUs: {placement.describe()}.\n"
          f"  Before: {load_average()} (other work on the machine makes every figure noisier).")

    placement.run_here_on_server_cpu()
    floors = in_process(settings, record, seconds=1.0)
    placement.run_here_on_generator_cpu()
    print("In process, one record, median time on the servers' CPU:")
    for name, milliseconds in floors.items():
        print(f"  {name:<64} {milliseconds:7.3f} ms")

    port = free_port()
    service = Server(SERVICE, [sys.executable, "-m", "{{ cookiecutter.package }}.cli", "serve"],
                     port, env=environment(settings, port), cpu=placement.server,
                     ready_path="/ready")
    flask = gunicorn("flask_reference", settings, placement.server, bodies["record"])
    course = gunicorn("flask_course", settings, placement.server, bodies["record"])
    with contextlib.ExitStack() as running:
        for server in (service, flask, course):
            running.callback(server.stop)
            server.launch()
        for server in (service, flask, course):
            server.wait_ready()
        # The ceiling answers the bytes the service gave for the same request.
        answer = workdir / "answer.json"
        answer.write_bytes(post(service.url("/predict"), bodies["record"]))
        port = free_port()
        ceiling = Server(CEILING, [sys.executable, str(HERE / "bare_asgi.py"), "--port",
                                   str(port), "--body-file", str(answer)],
                         port, cpu=placement.server, ready_path="/predict",
                         ready_body=bodies["record"])
        running.enter_context(ceiling)
        servers = {SERVICE: service, CEILING: ceiling, FLASK: flask, COURSE: course}
        difference = check_agreement({SERVICE: service, FLASK: flask, COURSE: course},
                                     batch[:50])
        print(f"Probabilities of 50 distinct records: the service, the Flask reference and "
              f"the course-style app differ by at most {difference:.1e}.")
        if difference > AGREEMENT:
            print(f"the servers disagree by more than {AGREEMENT}", file=sys.stderr)
            return 1
        phases = [Phase(name, "record", conns) for name in (SERVICE, CEILING, FLASK, COURSE)
                  for conns in (1, args.connections)] + [Phase(SERVICE, "batch", 1)]
        results = run_rounds(phases, servers, bodies, placement, args.rounds,
                             args.seconds, args.warmup)

    report(results, floors, args.connections, args.batch_rows)
    print(f"After: {load_average()}.")
    errors = sum(load.errors for loads in results.values() for load in loads)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
