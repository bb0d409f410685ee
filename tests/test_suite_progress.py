"""The suite's progress lines: while long tests run, a distributed run is not silent."""

import time
import types

import conftest


class Reporter:
    """Stands in for pytest's terminal reporter: keeps the lines written."""

    def __init__(self):
        self.lines = []

    def write_line(self, line):
        self.lines.append(line)


def heartbeat_with(reporter, interval):
    plugins = {"terminalreporter": reporter}
    config = types.SimpleNamespace(pluginmanager=types.SimpleNamespace(get_plugin=plugins.get))
    return conftest.ProgressHeartbeat(config, interval=interval)


def run_hook(hook, *args):
    """Drive a wrapper hook as pluggy does: up to its yield, then to its end."""
    generator = hook(*args)
    next(generator)
    try:
        generator.send(None)
    except StopIteration:
        pass


def test_progress_line_names_the_running_tests_oldest_first():
    line = conftest.progress_line(
        elapsed=360, running={"t.py::b": 940.0, "t.py::a": 760.0}, now=1000.0)
    assert line == "... 6 min in; still running: t.py::a (4 min), t.py::b (1 min)"


def test_a_quiet_run_gets_a_progress_line_naming_the_running_test():
    reporter = Reporter()
    heartbeat = heartbeat_with(reporter, interval=0.2)
    run_hook(heartbeat.pytest_runtest_logstart, "t.py::slow", ("t.py", 1, "slow"))
    heartbeat.pytest_sessionstart(None)
    try:
        deadline = time.monotonic() + 10
        while not reporter.lines and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        heartbeat.pytest_sessionfinish(None)
    assert reporter.lines and "still running: t.py::slow" in reporter.lines[0]


def test_no_progress_line_once_the_tests_ended():
    reporter = Reporter()
    heartbeat = heartbeat_with(reporter, interval=0.2)
    run_hook(heartbeat.pytest_runtest_logstart, "t.py::quick", ("t.py", 1, "quick"))
    report = types.SimpleNamespace(when="teardown", nodeid="t.py::quick")
    run_hook(heartbeat.pytest_runtest_logreport, report)
    heartbeat.pytest_sessionstart(None)
    time.sleep(0.6)
    heartbeat.pytest_sessionfinish(None)
    assert reporter.lines == []


def test_the_heartbeat_runs_only_on_the_controller_of_a_distributed_run(pytestconfig):
    registered = pytestconfig.pluginmanager.get_plugin("progress-heartbeat") is not None
    distributed = pytestconfig.getoption("dist", default="no") != "no"
    controller = not hasattr(pytestconfig, "workerinput")
    assert registered == (distributed and controller)
