"""Serving benchmark: the service under load on loopback, against a Flask reference.

Prints, in one run of about half a minute:

- the in-process ``model.predict`` time of one row (the floor no server can beat);
- single-row requests per second at 1 and at 32 connections, with p50 and p99 latency;
- rows per second of 1,000-row batches;
- the same single-row load against a plain Flask app on gunicorn sync workers
  (``flask_reference.py``), the reference a course-style service gives;
- the ratios against the targets.

Both servers run the trained model (``models/``; a model is trained into a temporary
registry when there is none), log every prediction like production does but into a temporary
directory, and get the same number of worker processes (``--workers``, default 1).

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams with request
bytes built once: it spends a few tens of microseconds per request, so on a 2-core machine
it measures the server, not itself. Every response is checked for status 200.

Run: ``make bench`` or ``.venv/bin/python benchmarks/serving.py --help``.
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

from {{ cookiecutter.package }} import data, model
from {{ cookiecutter.package }}.config import Settings
from {{ cookiecutter.package }}.registry import ModelNotFoundError

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
TARGET_THROUGHPUT_RATIO = 3.5
TARGET_P50_OVER_FLOOR_MS = 0.4
TARGET_BATCH_RATIO = 100


@dataclass
class Load:
    """The outcome of one load phase."""

    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1e3


def http_request(path: str, body: bytes) -> bytes:
    """The bytes of a POST request with a JSON body, built once per phase."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _connection(port: int, request: bytes, deadline: float, load: Load) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            start = lower.index(b"content-length:") + len(b"content-length:")
            await reader.readexactly(int(lower[start:lower.index(b"\r\n", start)]))
            if b"connection: close" in lower:
                # gunicorn's sync workers close after each response: the client reconnects,
                # and that cost is part of what such a server gives its clients.
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
            if head.startswith(b"HTTP/1.1 200"):
                load.requests += 1
                load.latencies.append(time.perf_counter() - started)
            else:
                load.errors += 1
    finally:
        writer.close()


async def _load(port: int, request: bytes, connections: int, seconds: float) -> Load:
    load = Load(0, 0, 0.0, [])
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, started + seconds, load)
                           for _ in range(connections)))
    load.seconds = time.perf_counter() - started
    return load


def run_load(port: int, request: bytes, connections: int, seconds: float) -> Load:
    """Send ``request`` over ``connections`` keep-alive connections for ``seconds``."""
    asyncio.run(_load(port, request, connections, min(0.5, seconds / 4)))  # warm-up
    return asyncio.run(_load(port, request, connections, seconds))


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, body: bytes | None,
                  timeout: float = 60) -> None:
    """Wait until ``url`` answers 200 (a POST when there is a body) or the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        probe = urllib.request.Request(url, data=body,
                                       headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(probe, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def start(command: list[str], env: dict, port: int, path: str,
          body: bytes | None = None) -> subprocess.Popen:
    """Start a server in its own process group; return once ``path`` answers 200."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until_up(process, f"http://{HOST}:{port}{path}", body)
    except BaseException:
        stop(process)
        sys.stderr.write(process.stderr.read().decode(errors="replace")[-2000:])
        raise
    return process


def stop(process: subprocess.Popen) -> None:
    """Stop a server and its workers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def in_process_floor(settings: Settings, seconds: float) -> float:
    """The p50 of ``model.predict`` on one row, in milliseconds."""
    loaded = model.load_model(settings)
    record = dict(data.SCHEMA.example)
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        model.predict(loaded, record, settings=settings)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[len(timings) // 10:]) * 1e3


def bench_settings(workdir: Path) -> Settings:
    """Settings with the project's trained model (or a fresh one) and throw-away logs."""
    settings = Settings(log_dir=workdir / "logs")
    try:
        model.load_model(settings)
    except ModelNotFoundError:
        print(f"no model in {settings.registry_dir}: training one for the benchmark")
        settings = Settings(log_dir=workdir / "logs", registry_dir=workdir / "models")
        model.train(settings)
    return settings


def environment(settings: Settings, port: int, workers: int) -> dict:
    """The environment of a server process."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MODEL_")}
    env.update(MODEL_HOST=HOST, MODEL_PORT=str(port), MODEL_WORKERS=str(workers),
               MODEL_REGISTRY_DIR=str(settings.registry_dir.resolve()),
               MODEL_LOG_DIR=str(settings.log_dir.resolve()), MODEL_VERSION=settings.version)
    return env


def line(label: str, load: Load, rows: int = 1) -> str:
    """One result line."""
    rows_rate = f"  = {load.rate * rows:>10,.0f} rows/s" if rows > 1 else ""
    errors = f"  ({load.errors} errors)" if load.errors else ""
    return (f"  {label:<34} {load.rate:>8,.0f} req/s  p50 {load.percentile(50):7.3f} ms  "
            f"p99 {load.percentile(99):7.3f} ms{rows_rate}{errors}")


def verdict(ok: bool) -> str:
    """MET or MISSED."""
    return "MET" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the results; non-zero when a server answered errors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load phase")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    parser.add_argument("--connections", type=int, default=32, help="the concurrent load")
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per batch request")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        settings = bench_settings(workdir)
        single = http_request("/predict", orjson.dumps(data.SCHEMA.example))
        batch = http_request("/predict", orjson.dumps(
            {"records": [data.SCHEMA.example] * args.batch_rows}))
        print(f"Serving benchmark: model {settings.version} from {settings.registry_dir}, "
              f"{args.workers} worker(s) per server, {args.seconds:g} s per load, {HOST}")
        floor = in_process_floor(settings, 1.0)
        print(f"  {'in-process predict, one row (floor)':<34} p50 {floor:7.3f} ms")

        port = free_port()
        env = environment(settings, port, args.workers)
        server = start([sys.executable, "-m", "{{ cookiecutter.package }}.cli", "serve"], env,
                       port, "/ready")
        try:
            fast_one = run_load(port, single, 1, args.seconds)
            print(line("uvicorn, single row, 1 connection", fast_one))
            fast_many = run_load(port, single, args.connections, args.seconds)
            print(line(f"uvicorn, single row, {args.connections} connections", fast_many))
            batches = run_load(port, batch, 1, args.seconds)
            print(line(f"uvicorn, {args.batch_rows}-row batches, 1 conn.", batches,
                       args.batch_rows))
        finally:
            stop(server)

        port = free_port()
        env = environment(settings, port, args.workers)
        reference = start(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers),
             "--worker-class", "sync", "--bind", f"{HOST}:{port}", "--chdir", str(HERE),
             "--log-level", "warning", "flask_reference:create_app()"],
            env, port, "/predict", orjson.dumps(data.SCHEMA.example))
        try:
            ref_one = run_load(port, single, 1, args.seconds)
            print(line("flask+gunicorn sync, 1 connection", ref_one))
            ref_many = run_load(port, single, args.connections, args.seconds)
            print(line(f"flask+gunicorn sync, {args.connections} conns", ref_many))
        finally:
            stop(reference)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    throughput = fast_many.rate / ref_many.rate
    over_floor = fast_one.percentile(50) - floor
    batch_ratio = batches.rate * args.batch_rows / fast_one.rate
    print("Targets (ratios from this run):")
    print(f"  {args.connections}-connection throughput vs Flask/gunicorn-sync: "
          f"{throughput:.1f}x (target >= {TARGET_THROUGHPUT_RATIO}x)  "
          f"{verdict(throughput >= TARGET_THROUGHPUT_RATIO)}")
    print(f"  p50 at 1 connection over the floor: {over_floor:.3f} ms "
          f"(target <= {TARGET_P50_OVER_FLOOR_MS} ms)  "
          f"{verdict(over_floor <= TARGET_P50_OVER_FLOOR_MS)}")
    print(f"  {args.batch_rows}-row batch rows/s vs single-row rows/s (1 connection each): "
          f"{batch_ratio:,.0f}x (target >= {TARGET_BATCH_RATIO}x)  "
          f"{verdict(batch_ratio >= TARGET_BATCH_RATIO)}")
    errors = sum(load.errors for load in (fast_one, fast_many, batches, ref_one, ref_many))
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
