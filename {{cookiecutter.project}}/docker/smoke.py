"""Smoke-test the serving image: run it, wait until Docker reports it healthy, then check it.

    python docker/smoke.py IMAGE --record '{"country": "...", ...}'

Checks, in order: the container becomes healthy (its own HEALTHCHECK); the health endpoint
answers 200; one prediction answers 200 with a prediction for the record; a bad request
answers 4xx; the service runs as a non-root user. The container is removed at the end, pass
or fail. Needs only the standard library and the ``docker`` command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

PORT = 8000


class SmokeFailure(Exception):
    """A check failed; the message says which and what was seen."""


def docker(*args: str) -> str:
    """Run ``docker ARGS`` and return its standard output; raise with its stderr on failure."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SmokeFailure(f"docker {args[0]} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def inspect(container: str) -> dict:
    """Docker's description of the container (``docker inspect``), as a dict."""
    return json.loads(docker("inspect", container))[0]


def wait_until_healthy(container: str, timeout: float) -> float:
    """Wait until Docker reports the container healthy; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = inspect(container)["State"]
        health = (state.get("Health") or {}).get("Status")
        if not state.get("Running"):
            raise SmokeFailure(f"the container stopped (exit code {state.get('ExitCode')})")
        if health is None:
            raise SmokeFailure("the image has no HEALTHCHECK")
        if health == "healthy":
            return time.monotonic() - start
        if health == "unhealthy":
            raise SmokeFailure("Docker reports the container unhealthy")
        time.sleep(0.2)
    raise SmokeFailure(f"not healthy after {timeout:.0f} s")


def request(url: str, body: object | None = None) -> tuple[int, str]:
    """GET ``url`` (or POST ``body`` as JSON); return the status code and the response text."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def check(name: str, passed: bool, seen: str) -> None:
    """Print one check's result; raise SmokeFailure when it did not pass."""
    print(f"{'PASS' if passed else 'FAIL'}  {name}: {seen}")
    if not passed:
        raise SmokeFailure(name)


def run_checks(container: str, base_url: str, record: dict, args: argparse.Namespace) -> None:
    """Every check against a started container, in order."""
    seconds = wait_until_healthy(container, args.timeout)
    check("Docker reports the container healthy", True, f"after {seconds:.1f} s")

    status, text = request(base_url + args.health_path)
    check(f"GET {args.health_path}", status == 200, f"{status} {text[:120]}")

    status, text = request(base_url + args.predict_path, record)
    check(f"POST {args.predict_path} (one record)", status == 200 and "predict" in text,
          f"{status} {text[:160]}")

    status, text = request(base_url + args.predict_path, {"not_a_feature": "oops"})
    check(f"POST {args.predict_path} (bad request) is a 4xx", 400 <= status < 500,
          f"{status} {text[:160]}")

    uid = docker("exec", container, "id", "-u")
    check("runs as a non-root user", uid != "0", f"uid {uid}")


def main(argv: list[str] | None = None) -> int:
    """Run the smoke test; return 0 when every check passed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="the serving image to test")
    parser.add_argument("--record", required=True, help="one valid input record, as JSON")
    parser.add_argument("--health-path", default="/health")
    parser.add_argument("--predict-path", default="/predict")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to become healthy")
    args = parser.parse_args(argv)

    container = docker("run", "--detach", "--publish", f"127.0.0.1::{PORT}", args.image)
    try:
        host_port = docker("port", container, f"{PORT}/tcp").splitlines()[0].rsplit(":", 1)[1]
        run_checks(container, f"http://127.0.0.1:{host_port}", json.loads(args.record), args)
    except SmokeFailure as failure:
        print(f"smoke test failed: {failure}", file=sys.stderr)
        logs = subprocess.run(["docker", "logs", "--tail", "30", container],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(logs.stdout, file=sys.stderr)
        return 1
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)
    print(f"smoke test passed: {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
