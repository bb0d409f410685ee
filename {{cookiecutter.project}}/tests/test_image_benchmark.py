"""The image benchmark's parts that need no Docker: its statistics, the naive Dockerfile it
writes, how it tells a prediction from a failure, how it polls a starting service and how it
reads ``python -X importtime``. (The template's image tests run its Docker part.)"""

import re
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import images  # noqa: E402 - the benchmarks folder is not a package


def test_spread_is_the_median_and_the_range():
    assert images.Spread.of([1.3, 1.1, 1.2]) == (1.2, 1.1, 1.3)
    assert images.Spread.of([4.0, 1.0, 2.0, 3.0]).median == 2.5  # an even count: the middle two
    assert images.Spread.of([0.5]) == (0.5, 0.5, 0.5)
    assert str(images.Spread.of([1.214, 1.1, 1.3])) == "1.21 s [1.10-1.30]"


def test_spread_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no measurements"):
        images.Spread.of([])


def test_naive_dockerfile_is_one_stage_on_the_base_serving_a_trained_model():
    dockerfile = images.naive_dockerfile("python:3.14-slim@sha256:abc")
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM python:3.14-slim@sha256:abc"
    assert [line for line in lines if line.startswith("FROM")] == [lines[0]]
    assert "pip install ." in dockerfile
    # Reachable through a published port, and a model to serve, as the real image has.
    assert "MODEL_HOST=0.0.0.0" in dockerfile
    assert "RUN model train" in dockerfile
    assert lines[-1] == 'CMD ["model", "serve"]'


def test_naive_dockerfile_builds_on_the_reference_that_base_image_replaces():
    # --base-image works through a named build context for the pinned FROM reference: the
    # naive build must name that same reference for the substitution to reach it.
    pinned = images.pinned_base(images.PROJECT / "docker" / "cpu.Dockerfile")
    assert images.naive_dockerfile(pinned).splitlines()[0] == f"FROM {pinned}"


def test_package_name_is_the_one_package_under_src(tmp_path):
    assert images.package_name() == "{{ cookiecutter.package }}"
    (tmp_path / "src" / "one").mkdir(parents=True)
    (tmp_path / "src" / "one" / "__init__.py").touch()
    (tmp_path / "src" / "one.egg-info").mkdir()
    assert images.package_name(tmp_path) == "one"
    (tmp_path / "src" / "two").mkdir()
    (tmp_path / "src" / "two" / "__init__.py").touch()
    with pytest.raises(SystemExit, match="expected one package"):
        images.package_name(tmp_path)


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, b'{"predictions": [1], "probabilities": [0.91]}', True),
    (200, b'{"probabilities": [0.0, 1.0]}', True),
    (503, b'{"probabilities": [0.91]}', False),
    (200, b'{"probabilities": []}', False),
    (200, b'{"probabilities": [1.5]}', False),
    (200, b'{"probabilities": ["0.9"]}', False),
    (200, b'{"ready": true}', False),
    (200, b"[0.91]", False),
    (200, b"<html>", False),
])
def test_only_a_200_with_probabilities_counts_as_a_prediction(status, body, expected):
    assert images.is_prediction(status, body) is expected


def test_poll_returns_soon_after_the_service_answers(status_server):
    start = time.monotonic()
    ready_at = start + 0.3  # the service answers 503 until then, 200 after
    url = status_server(lambda _: 200 if time.monotonic() >= ready_at else 503) + "/ready"
    seconds = images.poll(urllib.request.Request(url), images.is_ok, start, start + 10)
    # Not before the service was ready; late by at most a poll interval and a request (the
    # bound is loose: a busy machine delays the thread).
    assert 0.3 <= seconds < 0.3 + 1.0


def test_poll_counts_a_refused_connection_as_not_yet_and_gives_up_at_the_deadline():
    port = images.free_port()  # nothing listens there
    start = time.monotonic()
    seconds = images.poll(urllib.request.Request(f"http://127.0.0.1:{port}/ready"),
                          images.is_ok, start, start + 0.3)
    assert seconds is None
    assert time.monotonic() - start >= 0.3


def test_start_commands_run_the_runtime_the_interpreter_then_the_service_imports():
    commands = images.start_commands("pkg")
    assert list(commands) == ["runtime", "interpreter", "imports", "imports_uncompiled"]
    assert commands["runtime"] == ("true",)
    assert commands["interpreter"] == ("python3", "-c", "pass")
    imports = "import pkg.serving.service, uvicorn, os; os._exit(0)"
    assert commands["imports"] == ("python3", "-c", imports)
    assert commands["imports_uncompiled"] == (
        "python3", "-B", "-X", "pycache_prefix=/nonexistent", "-c", imports)
    assert set(images.START_LABELS) == {*commands, "bare", "ready", "prediction"}


def test_without_bytecode_the_interpreter_compiles_in_memory(tmp_path):
    # What the "no bytecode" step relies on: with the prefix, a module's bytecode beside it is
    # not read, and -B writes none anywhere.
    import subprocess

    module = tmp_path / "probe_module.py"
    module.write_text("VALUE = 1\n")
    subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode",
                    "unchecked-hash", str(module)], check=True)
    module.write_text("VALUE = 2\n")  # the unchecked bytecode says 1, the source 2
    read = [sys.executable, "-c", "import probe_module; print(probe_module.VALUE)"]
    compiled = subprocess.run(read, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert compiled.stdout.strip() == "1"
    uncompiled = subprocess.run([read[0], *images.start_commands("x")["imports_uncompiled"][1:4],
                                 *read[1:]], cwd=tmp_path, capture_output=True, text=True,
                                check=True)
    assert uncompiled.stdout.strip() == "2"
    assert sorted(path.name for path in tmp_path.rglob("*.pyc")) == [
        "probe_module.cpython-%d%d.pyc" % sys.version_info[:2]]


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:       900 |       1000 |     fastapi.openapi.models
import time:     20000 |     400000 |   fastapi.routing
import time:    300000 |     700000 | fastapi
import time:     50000 |      50000 |     numpy._core
import time:    100000 |     150000 |   numpy
import time:      5000 |      5000 | {{ cookiecutter.package }}.scoring
an unrelated line
"""


def test_slowest_imports_add_up_each_modules_own_time_by_top_level_package():
    assert images.slowest_imports(IMPORTTIME, top=3) == [
        ("fastapi", pytest.approx(0.3209)),
        ("numpy", pytest.approx(0.15)),
        ("{{ cookiecutter.package }}", pytest.approx(0.005)),
    ]
    assert len(images.slowest_imports(IMPORTTIME, top=10)) == 4  # _io too, no header line


def test_load_average_names_the_cpus():
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d on \d+ CPUs", images.load_average())


def test_report_prints_the_start_of_both_images_with_the_ratio(capsys):
    spread = {name: images.Spread(1.0, 0.9, 1.2) for name in images.START_LABELS}
    naive = dict(spread, prediction=images.Spread(2.0, 1.8, 2.4))
    images.report_starts({"img:cpu": spread, "img:naive": naive},
                         {"img:cpu": [("fastapi", 0.3)], "img:naive": [("numpy", 0.2)]},
                         "img:cpu", "img:naive", runs=10)
    out = capsys.readouterr().out
    assert "10 interleaved runs per image" in out
    assert re.search(r"serve: first prediction \(200\)\s+1\.00 s \[0\.90-1\.20\]\s+"
                     r"2\.00 s \[1\.80-2\.40\]", out)
    assert re.search(r"start / naive start \(medians\)\s+0\.50", out)
    assert re.search(r"start above a bare uvicorn app\s+0\.00 s", out)
    assert "image (s): fastapi 0.30" in out and "naive build (s): numpy 0.20" in out
