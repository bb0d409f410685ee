"""Server processes for benchmarks: CPU placement, start, readiness, stop; and the rounds.

A benchmark pins every server to one CPU and the load generator to another, where the machine
lets this process use two or more (``os.sched_getaffinity``; Linux): the server then has a
core to itself and never competes with the generator. Elsewhere nothing is pinned, and
``Placement.describe`` says so in the report.

Phases run in interleaved rounds: every round measures every phase once, in an order that
rotates from round to round, so a slow minute on a shared machine lowers one round of every
phase rather than every round of one phase. ``Spread`` reports the median and the range.

Only the standard library is imported here: the template's peer benchmark runs it outside the
project's environment.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Placement:
    """The CPU of the servers and the CPU of the load generator (None: not pinned)."""

    server: int | None
    generator: int | None

    @classmethod
    def choose(cls, pin: bool = True) -> Placement:
        """The first two CPUs this process may use, or no pinning with fewer or on request."""
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not pin or len(allowed) < 2:
            return cls(None, None)
        return cls(allowed[0], allowed[1])

    def describe(self) -> str:
        """One line for the report."""
        if self.server is None:
            return "not pinned (fewer than 2 usable CPUs, no sched_setaffinity, or --no-pin)"
        return f"servers on CPU {self.server}, load generator on CPU {self.generator}"

    def run_here_on_server_cpu(self) -> None:
        """Move this process to the servers' CPU (for in-process timings)."""
        if self.server is not None:
            os.sched_setaffinity(0, {self.server})

    def run_here_on_generator_cpu(self) -> None:
        """Move this process off the servers' CPU while they are measured."""
        if self.generator is not None:
            os.sched_setaffinity(0, {self.generator})


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, for the report."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def post(url: str, body: bytes, timeout: float = 10) -> bytes:
    """POST a JSON body; the response body (raises for a non-2xx status)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.read()


def wait_until_up(process: subprocess.Popen, url: str, body: bytes | None,
                  timeout: float) -> None:
    """Wait until ``url`` answers 200 (a POST of ``body`` when given) or the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            if body is None:
                with urllib.request.urlopen(url, timeout=1):
                    return
            post(url, body, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Server:
    """A server process in its own session, pinned to ``cpu``; a context manager.

    ``launch`` several servers before waiting for any: they load their models at the same time.
    """

    def __init__(self, name: str, command: list[str], port: int, *, env: dict | None = None,
                 cpu: int | None = None, ready_path: str = "/", ready_body: bytes | None = None,
                 cwd: str | None = None, timeout: float = 120):
        self.name = name
        self.command = command
        self.port = port
        self.env = env
        self.cpu = cpu
        self.ready = (ready_path, ready_body)
        self.cwd = cwd
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.stderr = None

    def url(self, path: str) -> str:
        """The server's URL for ``path``."""
        return f"http://{HOST}:{self.port}{path}"

    def launch(self) -> Server:
        """Start the process (once); ``wait_ready`` waits for it to answer."""
        if self.process is None:
            # The affinity is set before exec, so every process the server forks inherits it.
            pin = (lambda: os.sched_setaffinity(0, {self.cpu})) if self.cpu is not None else None
            # A file, not a pipe: a server that logs every request would fill a pipe and stall.
            self.stderr = tempfile.TemporaryFile()
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd,
                                            stdout=subprocess.DEVNULL, stderr=self.stderr,
                                            start_new_session=True, preexec_fn=pin)
        return self

    def wait_ready(self) -> Server:
        """Wait until the server answers; stop it and show its stderr when it cannot."""
        path, body = self.ready
        try:
            wait_until_up(self.process, self.url(path), body, self.timeout)
        except BaseException:
            self.stop()
            self.stderr.seek(0)
            sys.stderr.write(f"{self.name} did not start:\n"
                             + self.stderr.read().decode(errors="replace")[-3000:])
            raise
        return self

    def __enter__(self) -> Server:
        return self.launch().wait_ready()

    def __exit__(self, *_) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server and every process of its session."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass(frozen=True)
class Spread:
    """The median and range of one figure over the rounds."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median over the rounds."""
        return statistics.median(self.values)

    def format(self, spec: str, unit: str = "") -> str:
        """``median [min-max]`` with ``spec`` as the number format."""
        low, high = min(self.values), max(self.values)
        return f"{self.median:{spec}}{unit} [{low:{spec}}-{high:{spec}}]"


def rotated(items: list, round_number: int) -> list:
    """``items`` starting at a different one each round: every phase gets every position."""
    shift = round_number % len(items)
    return items[shift:] + items[:shift]
