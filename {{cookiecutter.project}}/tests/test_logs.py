"""Logs: JSON Lines in monthly files, test logs apart, no line lost or torn by any writer."""

import asyncio
import errno
import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from {{ cookiecutter.package }} import logs


def test_production_and_test_logs_have_different_monthly_files(tmp_path):
    assert logs.log_path(tmp_path, "predict", month="2024-03").name == "predict-2024-03.jsonl"
    assert logs.log_path(tmp_path, "train", test_mode=True, month="2024-03").name == (
        "train-test-2024-03.jsonl")


def test_log_path_defaults_to_the_current_month(tmp_path):
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    assert logs.log_path(tmp_path, "train").name == f"train-{month}.jsonl"


@pytest.mark.parametrize(("kind", "month"), [("debug", None), ("train", "March")])
def test_log_path_refuses_unknown_kinds_and_months(tmp_path, kind, month):
    with pytest.raises(ValueError):
        logs.log_path(tmp_path, kind, month=month)


def test_values_read_back_equal_those_written(tmp_path):
    written = [{"prediction": 1, "probability": 0.731, "input": {"country": "singapore"}},
               {"prediction": 0, "probability": 0.2, "request_id": "é-ü"}]
    path = logs.log_path(tmp_path / "new" / "dir", "predict")
    assert logs.append_records(path, written) == 2
    assert logs.read_log(tmp_path / "new" / "dir", "predict") == written


def test_nothing_to_append_writes_nothing(tmp_path):
    path = logs.log_path(tmp_path, "predict")
    assert logs.append_records(path, []) == 0
    assert not path.exists()


def test_every_month_is_read_in_order(tmp_path):
    for month in ("2024-02", "2023-12", "2024-01"):
        logs.append_records(logs.log_path(tmp_path, "predict", month=month), [{"month": month}])
    logs.append_records(logs.log_path(tmp_path, "predict", test_mode=True), [{"month": "test"}])
    assert [r["month"] for r in logs.read_log(tmp_path, "predict")] == [
        "2023-12", "2024-01", "2024-02"]
    assert logs.read_log(tmp_path, "predict", month="2024-01") == [{"month": "2024-01"}]
    assert logs.read_log(tmp_path, "predict", test_mode=True) == [{"month": "test"}]


def test_a_missing_log_reads_as_empty(tmp_path):
    assert logs.read_log(tmp_path / "nowhere", "train") == []
    assert logs.read_log(tmp_path, "train", month="2020-01") == []


@pytest.mark.parametrize("corrupt", ["[1, 2]", '{"torn": '], ids=["not-an-object", "torn"])
def test_a_corrupt_line_is_reported_with_file_and_line(tmp_path, corrupt):
    path = logs.log_path(tmp_path, "train")
    path.write_text('{"ok": 1}\n\n' + corrupt + "\n")
    with pytest.raises(logs.LogFormatError, match=rf"{path.name}, line 3: not a JSON object"):
        logs.read_log(tmp_path, "train")


def test_training_record_holds_the_minimal_fields(tmp_path):
    path = logs.log_training(tmp_path, test_mode=True, model_version="0.3", runtime=1.5,
                             input_data_summary={"n_rows": 10}, details={"metrics": {"f1": 1}})
    (record,) = logs.read_log(tmp_path, "train", test_mode=True)
    assert path.name.startswith("train-test-")
    assert {"timestamp", "runtime", "model_version", "input_data_summary", "metrics"} <= set(record)
    assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None


def test_a_training_record_goes_to_the_month_of_its_own_timestamp(tmp_path, monkeypatch):
    # A run that ends at midnight at the end of a month: each clock read sees a later time.
    readings = iter([datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=timezone.utc).timestamp(),
                     datetime(2026, 2, 1, 0, 0, 0, 1, tzinfo=timezone.utc).timestamp()])
    monkeypatch.setattr(logs.time, "time", lambda: next(readings))
    path = logs.log_training(tmp_path, test_mode=False, model_version="0.1", runtime=1.0,
                             input_data_summary={}, details={})
    (record,) = logs.read_log(tmp_path, "train")
    assert path.name == f"train-{record['timestamp'][:7]}.jsonl" == "train-2026-01.jsonl"


def test_timestamps_are_what_datetime_writes_whichever_way_the_clock_moves(monkeypatch):
    # The date and time of day are formatted once per second: a new second, a clock stepped
    # back and a fraction that rounds up into the next second must each be written afresh.
    second = datetime(2026, 1, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    readings = [second + 0.25, second + 0.5000005, second + 0.9999996, second + 1.000001,
                second - 86400 * 40 + 0.1, second + 1e-7, second + 0.0000025, second + 0.75]
    for reading in readings:
        monkeypatch.setattr(logs.time, "time", lambda reading=reading: reading)
        expected = datetime.fromtimestamp(reading, timezone.utc).isoformat(
            timespec="microseconds")
        assert logs.utc_now() == expected


def test_an_unwritable_log_raises_a_log_write_error_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "predict-2026-01.jsonl"
    with pytest.raises(logs.LogWriteError) as raised:
        logs.append_lines(path, [b"{}"])
    assert raised.value.filename == str(path)
    with pytest.raises(logs.LogWriteError):
        logs.check_writable(tmp_path / "file", "predict")


def test_only_regular_log_files_are_listed(tmp_path):
    (tmp_path / "predict-2026-01.jsonl").write_text("{}\n")
    (tmp_path / "predict-2026-02.jsonl").symlink_to(tmp_path / "predict-2026-01.jsonl")
    (tmp_path / "train-2026-01.jsonl").mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert logs.served_log_files(tmp_path) == [("predict-2026-01.jsonl", 3)]
    assert logs.served_log_files(tmp_path / "missing") == []
    assert logs.open_served_log(tmp_path, "predict-2026-02.jsonl") is None
    assert logs.open_served_log(tmp_path, "../predict-2026-01.jsonl") is None


def test_one_record_is_written_per_predicted_row(tmp_path):
    rows = [{"age": 30}, {"age": 40}]
    logs.log_predictions(tmp_path, test_mode=False, model_version="0.1", request_id="r",
                         runtime=0.001, rows=rows, labels=[1, 0], probabilities=[0.9, 0.1])
    records = logs.read_log(tmp_path, "predict")
    assert [(r["row"], r["prediction"], r["input"]) for r in records] == [
        (0, 1, {"age": 30}), (1, 0, {"age": 40})]


LONG = "x" * 5000  # long lines: a torn write would show as invalid JSON


def test_concurrent_threads_lose_no_lines(tmp_path):
    path = logs.log_path(tmp_path, "predict")

    def writer(number):
        for i in range(100):
            logs.append_records(path, [{"writer": number, "i": i, "pad": LONG}] * 2)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = logs.read_log(tmp_path, "predict")
    assert len(records) == 8 * 100 * 2
    assert all(r["pad"] == LONG for r in records)


def test_concurrent_processes_lose_no_lines(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from {logs.__name__} import append_records
        for i in range(200):
            append_records(sys.argv[1], [dict(writer=sys.argv[2], i=i, pad="{LONG}")])
    """)
    path = logs.log_path(tmp_path, "predict")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)])
                 for n in range(4)]
    assert [p.wait() for p in processes] == [0] * 4
    records = logs.read_log(tmp_path, "predict")
    assert len(records) == 4 * 200
    for writer in map(str, range(4)):
        assert [r["i"] for r in records if r["writer"] == writer] == list(range(200))


# ----------------------------------------------------------------------------- the writer

def append_all(writer: logs.LogWriter, appends: list[tuple[str, list[bytes]]]) -> list:
    """Queue the appends from an event loop; the outcome each ``then`` got, in order."""
    async def main():
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in appends]
        for (path, lines), future in zip(appends, futures):
            writer.append(path, lines, future.set_result)
        return await asyncio.gather(*futures)

    return asyncio.run(main())


@pytest.fixture
def writer():
    """A log writer, closed at the end."""
    log_writer = logs.LogWriter()
    yield log_writer
    log_writer.close()


def test_the_writer_keeps_the_order_and_reports_every_append(tmp_path, writer):
    path = str(tmp_path / "predict-2026-01.jsonl")
    outcomes = append_all(writer, [(path, [b'{"i":%d}' % i, b'{"j":%d}' % i])
                                   for i in range(50)])
    assert outcomes == [None] * 50
    expected = [line for i in range(50) for line in (b'{"i":%d}' % i, b'{"j":%d}' % i)]
    assert (tmp_path / "predict-2026-01.jsonl").read_bytes().splitlines() == expected


def append_at_once(writer: logs.LogWriter, path: str, line: bytes) -> list:
    """Append from an event loop; what ``then`` got before ``append`` returned (or nothing)."""
    async def main():
        reported: list = []
        writer.append(path, [line], reported.append)
        at_once = list(reported)
        while not reported:  # it went to the thread: wait for its report
            await asyncio.sleep(0.005)
        return at_once

    return asyncio.run(main())


def test_files_are_opened_on_the_writers_thread_and_written_at_once_when_nothing_waits(
        tmp_path, writer, writes_and_opens, no_slow_writes):
    path = str(tmp_path / "predict-2026-01.jsonl")
    here = threading.get_ident()  # asyncio.run's loop runs on this thread
    assert append_at_once(writer, path, b'{"n":1}') == []  # opening the file: the thread's
    assert append_at_once(writer, path, b'{"n":2}') == [None]  # the file is open: at once
    thread, loop = writes_and_opens[0][1], here
    assert thread != loop
    assert writes_and_opens == [("open", thread), ("write", thread), ("write", loop)]
    assert Path(path).read_bytes() == b'{"n":1}\n{"n":2}\n'


def test_a_lock_held_elsewhere_sends_the_append_and_those_behind_it_to_the_thread(
        tmp_path, writer):
    path = str(tmp_path / "predict-2026-01.jsonl")
    append_all(writer, [(path, [b'{"n":1}'])])  # the file is open
    other = os.open(path, os.O_WRONLY | os.O_APPEND)  # another process's append, as flock sees it
    fcntl.flock(other, fcntl.LOCK_EX)

    async def main():
        reported: list = []
        writer.append(path, [b'{"n":2}'], reported.append)
        writer.append(path, [b'{"n":3}'], reported.append)  # queued behind: keeps the order
        at_once = list(reported)
        await asyncio.sleep(0.05)
        waited = list(reported)
        fcntl.flock(other, fcntl.LOCK_UN)
        while len(reported) < 2:
            await asyncio.sleep(0.005)
        return at_once, waited, reported

    try:
        at_once, waited, reported = asyncio.run(main())
    finally:
        os.close(other)
    assert (at_once, waited, reported) == ([], [], [None, None])
    assert Path(path).read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'
    assert writer._queued == 0
    # The thread's wait for the lock took longer than SLOW_WRITE_SECONDS: the next appends
    # are the thread's too, for OFFLOAD_SECONDS.
    assert append_at_once(writer, path, b'{"n":4}') == []


def test_a_write_that_fails_at_once_is_reported_and_the_thread_opens_the_file_again(
        tmp_path, writer, monkeypatch, no_slow_writes):
    path = str(tmp_path / "predict-2026-01.jsonl")
    append_all(writer, [(path, [b'{"n":0}'])])  # the file is open
    real_write = logs._locked_write
    failures = [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))]  # the disk fills once

    def write(fd, payload, **options):
        if failures:
            raise failures.pop()
        real_write(fd, payload, **options)

    monkeypatch.setattr(logs, "_locked_write", write)
    [error] = append_at_once(writer, path, b'{"n":1}')
    assert isinstance(error, logs.LogWriteError)
    assert error.filename == path and error.strerror == os.strerror(errno.ENOSPC)
    assert writer._open is None  # closed: the next append opens it again, on the thread
    assert append_at_once(writer, path, b'{"n":2}') == []
    assert append_at_once(writer, path, b'{"n":3}') == [None]
    assert Path(path).read_bytes() == b'{"n":0}\n{"n":2}\n{"n":3}\n'


def test_after_a_slow_write_appends_go_to_the_thread_until_writes_are_fast_again(
        tmp_path, writer, monkeypatch):
    path = str(tmp_path / "predict-2026-01.jsonl")
    append_all(writer, [(path, [b'{"n":0}'])])  # the file is open
    # Far apart, so that a busy test machine's stalls count as fast writes.
    monkeypatch.setattr(logs, "SLOW_WRITE_SECONDS", 0.25)
    monkeypatch.setattr(logs, "OFFLOAD_SECONDS", 0.5)
    real_write = logs._locked_write
    delays = [0.5]  # the first write waits on the "disk", the others do not

    def write(fd, payload, **options):
        time.sleep(delays.pop() if delays else 0)
        real_write(fd, payload, **options)

    monkeypatch.setattr(logs, "_locked_write", write)
    assert append_at_once(writer, path, b'{"n":1}') == [None]  # written at once, but slowly
    assert append_at_once(writer, path, b'{"n":2}') == []  # so the next one went to the thread
    time.sleep(0.55)  # fast writes for longer than OFFLOAD_SECONDS
    assert append_at_once(writer, path, b'{"n":3}') == [None]
    assert Path(path).read_bytes().splitlines() == [b'{"n":%d}' % n for n in range(4)]


def test_closing_the_writer_writes_everything_still_queued(tmp_path, slow_log_writes):
    writer = logs.LogWriter()
    path = str(tmp_path / "predict-2026-01.jsonl")
    answered: list = []

    async def queue_and_leave():
        for i in range(20):
            writer.append(path, [b'{"i":%d}' % i], answered.append)

    asyncio.run(queue_and_leave())  # the loop is gone before most lines are written
    writer.close()
    lines = (tmp_path / "predict-2026-01.jsonl").read_bytes().splitlines()
    assert lines == [b'{"i":%d}' % i for i in range(20)]
    assert writer._thread is None


def test_an_append_queued_behind_the_stop_is_written_before_the_writer_stops(tmp_path):
    # An append racing close(): its lines reach the thread in the same round as the stop.
    writer = logs.LogWriter()
    path = str(tmp_path / "predict-2026-01.jsonl")
    answered: list = []

    async def stop_then_append():
        # Both queued before the thread starts, so its first round holds both, in this order.
        writer._queue.put(writer._STOP)
        writer._queue.put((path, [b'{"late":1}'], asyncio.get_running_loop(), answered.append))
        writer._start()
        thread = writer._thread
        assert thread is not None
        thread.join(timeout=5)
        assert not thread.is_alive()
        await asyncio.sleep(0)  # the thread's report, scheduled on this loop, runs

    asyncio.run(stop_then_append())
    assert answered == [None]
    assert (tmp_path / "predict-2026-01.jsonl").read_bytes() == b'{"late":1}\n'


def test_the_writer_follows_a_log_moved_away_and_a_new_month(tmp_path, writer):
    january = str(tmp_path / "predict-2026-01.jsonl")
    append_all(writer, [(january, [b'{"n":1}'])])
    os.rename(january, tmp_path / "rotated.jsonl")  # logrotate's default: move, then create
    append_all(writer, [(january, [b'{"n":2}'])])
    february = str(tmp_path / "predict-2026-02.jsonl")
    append_all(writer, [(february, [b'{"n":3}'])])
    assert (tmp_path / "rotated.jsonl").read_bytes() == b'{"n":1}\n'
    assert (tmp_path / "predict-2026-01.jsonl").read_bytes() == b'{"n":2}\n'
    assert (tmp_path / "predict-2026-02.jsonl").read_bytes() == b'{"n":3}\n'


def test_a_failed_append_is_reported_and_the_next_one_opens_the_file_again(tmp_path, writer):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = str(blocker / "predict-2026-01.jsonl")  # its folder is a file
    [error] = append_all(writer, [(path, [b"{}"])])
    assert isinstance(error, logs.LogWriteError)
    assert error.filename == path and error.strerror
    blocker.unlink()
    blocker.mkdir()
    assert append_all(writer, [(path, [b"{}"])]) == [None]
    assert (blocker / "predict-2026-01.jsonl").read_bytes() == b"{}\n"


def test_the_writer_and_other_processes_lose_no_lines(tmp_path, writer):
    script = textwrap.dedent(f"""
        import sys
        from {logs.__name__} import append_records
        for i in range(200):
            append_records(sys.argv[1], [dict(writer=sys.argv[2], i=i, pad="{LONG}")])
    """)
    path = logs.log_path(tmp_path, "predict")
    process = subprocess.Popen([sys.executable, "-c", script, str(path), "cli"])
    line = b'{"writer":"service","pad":"%s"}' % LONG.encode()
    append_all(writer, [(str(path), [line] * 3)] * 200)
    assert process.wait() == 0
    records = logs.read_log(tmp_path, "predict")
    assert len(records) == 200 + 200 * 3
    assert [r["i"] for r in records if r["writer"] == "cli"] == list(range(200))
