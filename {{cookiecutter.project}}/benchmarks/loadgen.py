"""The load generator: wrk in a process of its own, or this file's asyncio client as a fallback.

``measure`` sends one POST body over a number of connections for a number of seconds and
returns a ``Load``: responses, errors, the rate and the p50 and p99 latency. It runs the
generator as a separate process, pinned to a CPU of its own when it is given one, so the
generator never competes with the server for a core.

- **wrk** (``apt-get install wrk``, ``brew install wrk``) when it is on PATH: C, one thread,
  keep-alive connections, ``post.lua`` supplies the body and reports the outcome as JSON.
  A server that answers ``Connection: close`` (gunicorn's sync workers) makes wrk reconnect;
  the reconnect counts in that request's latency.
- **the fallback**, without wrk (or with ``BENCH_GENERATOR=python``): this file run as a
  script, a minimal HTTP/1.1 client on asyncio streams (uvloop when installed) with the
  request bytes built once. Keep-alive like wrk, and like wrk it reconnects after
  ``Connection: close``; its reconnect costs more of its own CPU than wrk's, so against a
  server that closes every connection it measures less than wrk would. Its results are labelled
  with the generator's name: compare numbers from the same generator only.

Only the standard library (and uvloop, when present) is imported here: the template's peer
benchmark runs it outside the project's environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "post.lua"
RESULT_PREFIX = "BENCH_RESULT "


@dataclass
class Load:
    """The outcome of one load phase."""

    responses: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator: str = field(default="")

    @property
    def ok(self) -> int:
        """Responses with a 2xx status."""
        return self.responses - self.errors

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def generator() -> str:
    """``wrk`` when it is installed (and not overridden by BENCH_GENERATOR), else ``python``."""
    chosen = os.environ.get("BENCH_GENERATOR", "wrk")
    if chosen not in ("wrk", "python"):
        raise SystemExit(f"BENCH_GENERATOR must be wrk or python, got {chosen!r}")
    return "wrk" if chosen == "wrk" and shutil.which("wrk") else "python"


def pin_to(cpu: int | None):
    """A ``preexec_fn`` that pins the new process (and what it forks) to ``cpu``; or None."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def measure(url: str, body: bytes, connections: int, seconds: int,
            cpu: int | None = None) -> Load:
    """POST ``body`` to ``url`` over ``connections`` connections for ``seconds`` (an integer)."""
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        name = generator()
        if name == "wrk":
            command = [shutil.which("wrk"), "--threads", "1", "--connections", str(connections),
                       "--duration", f"{seconds}s", "--timeout", "10s",
                       "--script", str(WRK_SCRIPT), url]
        else:
            command = [sys.executable, str(Path(__file__).resolve()), url, body_file.name,
                       "--connections", str(connections), "--seconds", str(seconds)]
        env = {**os.environ, "BENCH_BODY": body_file.name}
        finished = subprocess.run(command, env=env, capture_output=True, text=True,
                                  preexec_fn=pin_to(cpu), timeout=seconds + 60)
    lines = [line for line in finished.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {finished.returncode}): "
                           f"{(finished.stderr or finished.stdout)[-1000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    errors = sum(result[key] for key in ("status_errors", "connect_errors", "read_errors",
                                         "write_errors", "timeouts"))
    return Load(responses=result["responses"], errors=errors, seconds=result["seconds"],
                p50_ms=result["p50_ms"], p99_ms=result["p99_ms"], generator=name)


# The fallback client -------------------------------------------------------------------------

def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def _connection(host: str, port: int, request: bytes, deadline: float,
                      tally: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            start = lower.index(b"content-length:") + len(b"content-length:")
            await reader.readexactly(int(lower[start:lower.index(b"\r\n", start)]))
            if b"connection: close" in lower:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            tally["responses"] += 1
            if not head[9:10] == b"2":  # "HTTP/1.1 200 ..." -> the status code's first digit
                tally["status_errors"] += 1
            tally["latencies"].append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(url: str, body: bytes, connections: int, seconds: float) -> dict:
    parts = urlsplit(url)
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    request = head.encode("ascii") + body
    tally = {"responses": 0, "status_errors": 0, "latencies": []}
    started = time.perf_counter()
    await asyncio.gather(*(_connection(parts.hostname, parts.port, request,
                                       started + seconds, tally)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.pop("latencies"))
    return {**tally, "seconds": elapsed, "connect_errors": 0, "read_errors": 0,
            "write_errors": 0, "timeouts": 0, "p50_ms": _percentile(ordered, 50) * 1e3,
            "p99_ms": _percentile(ordered, 99) * 1e3}


def main(argv: list[str] | None = None) -> int:
    """The fallback generator's command line; prints the outcome as wrk's script does."""
    parser = argparse.ArgumentParser(description="POST a body over keep-alive connections.")
    parser.add_argument("url")
    parser.add_argument("body_file", type=Path)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        import uvloop  # the client's own cost per request is lower on uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(_load(args.url, args.body_file.read_bytes(), args.connections,
                          args.seconds))
    print(RESULT_PREFIX + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
