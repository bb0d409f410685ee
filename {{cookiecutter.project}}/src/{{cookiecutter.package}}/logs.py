"""Train and predict logs: JSON Lines, one file per month, test-mode logs kept apart.

One JSON object per line, one line per event at the most granular level (a training run, a
predicted row), with the fields performance monitoring needs: timestamp, runtime, model
version, a summary of the input data and, for predictions, the prediction itself.

Every append is a single ``write`` of whole lines to a file opened with ``O_APPEND``, under an
exclusive ``flock``: threads and processes (service workers, a CLI running next to them) can
log at the same time without interleaving or losing lines. The service appends through a
``LogWriter``, which never lets its event loop wait on a file: what could wait runs on a
thread of its own.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import math
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import orjson

KINDS = ("train", "predict")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
# Every record this module writes starts with its timestamp (see log_prediction_requests).
_TIMESTAMP_PREFIX = b'{"timestamp":"'
# The names of the monthly log files (see log_path), and nothing else: never a path.
FILE_NAME = re.compile(r"^(train|predict)(-test)?-\d{4}-\d{2}\.jsonl$")
# One lock per process is enough: flock already serialises processes, the lock spares threads
# of one process from contending on the same file lock.
_append_lock = threading.Lock()
# A write to an open file returns once the kernel has the bytes, in microseconds. One that took
# 10 ms found the kernel waiting (dirty-page throttling, a network file system, a full
# journal), not just a busy CPU (a time slice is a few ms): a LogWriter then sends every write
# to its thread until they have been fast for OFFLOAD_SECONDS (see LogWriter).
SLOW_WRITE_SECONDS = 0.01
OFFLOAD_SECONDS = 10.0


class LogFormatError(ValueError):
    """A log file holds a line that is not a JSON object."""


class LogWriteError(OSError):
    """A log could not be written (no space, no permission, read-only...): ``strerror`` says why.

    ``filename`` is the log file; it stays out of messages to clients.
    """


_SECOND: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def utc_now() -> str:
    """The current time as an ISO-8601 UTC timestamp with microseconds.

    What ``datetime.now(timezone.utc).isoformat(timespec="microseconds")`` writes; the date
    and time of day are formatted once per second, as the service asks many times a second.
    """
    global _SECOND
    # Rounded as datetime rounds a timestamp: the fraction to the nearest microsecond, half
    # to even, carried into the second.
    fraction, whole = math.modf(time.time())
    second, micro = int(whole), round(fraction * 1_000_000)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    if _SECOND[0] != second:
        _SECOND = (second, datetime.fromtimestamp(second, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S"))
    return f"{_SECOND[1]}.{micro:06d}+00:00"


def _file_name(kind: str, test_mode: bool, month: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown log kind {kind!r}: expected one of {', '.join(KINDS)}")
    return f"{kind}{'-test' if test_mode else ''}-{month}.jsonl"


def log_path(log_dir: str | os.PathLike, kind: str, *, test_mode: bool = False,
             month: str | None = None) -> Path:
    """The log file of ``kind`` ("train" or "predict") for a month ("YYYY-MM", default now).

    Production logs are ``<kind>-YYYY-MM.jsonl``, test-mode logs ``<kind>-test-YYYY-MM.jsonl``.
    """
    if month is None:
        month = datetime.now(timezone.utc).strftime("%Y-%m")
    elif not _MONTH.match(month):
        raise ValueError(f"month must look like YYYY-MM, got {month!r}")
    return Path(log_dir) / _file_name(kind, test_mode, month)


def served_log_files(log_dir: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """(name, size) of every log file in ``log_dir`` that is a regular file, not a link.

    What the service lists and serves: a symbolic link dropped in the folder (dangling or
    pointing anywhere) is never followed.
    """
    found = []
    try:
        entries = list(os.scandir(log_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        if FILE_NAME.match(entry.name):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                found.append((entry.name, info.st_size))
    return sorted(found)


def open_served_log(log_dir: str | os.PathLike, name: str) -> tuple[int, int] | None:
    """Open a log file of ``served_log_files`` for reading: (file descriptor, size), or None.

    None for anything but a regular file directly in ``log_dir``: ``O_NOFOLLOW`` refuses a
    link and ``fstat`` checks what was opened, so a link swapped in between is not followed.
    """
    if not FILE_NAME.match(name):
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO
    try:
        fd = os.open(os.path.join(log_dir, name), flags)
    except OSError:  # missing, a link (ELOOP), unreadable
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info.st_size


def log_files(log_dir: str | os.PathLike, kind: str, *, test_mode: bool = False,
              since: str = "") -> list[Path]:
    """All monthly files of one log, oldest first; from the month of ``since`` on if given."""
    _file_name(kind, test_mode, "0000-00")  # validates kind
    pattern = f"{kind}{'-test' if test_mode else ''}-[0-9][0-9][0-9][0-9]-[0-9][0-9].jsonl"
    # The month is the name's tail (YYYY-MM.jsonl).
    return sorted(path for path in Path(log_dir).glob(pattern) if path.stem[-7:] >= since[:7])


def append_records(path: str | os.PathLike, records: Iterable[Mapping]) -> int:
    """Append records to a JSON Lines file as one atomic write; return the number of lines."""
    return append_lines(
        path, [orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) for record in records])


def append_lines(path: str | os.PathLike, lines: Sequence[bytes]) -> int:
    """Append serialised JSON lines (no newline) as one atomic write; return their number."""
    if not lines:
        return 0
    payload = _payload(lines)
    with _append_lock:
        try:
            fd = _open_for_append(path)
            try:
                _locked_write(fd, payload)
            finally:
                os.close(fd)
        except OSError as error:
            raise LogWriteError(error.errno, error.strerror, os.fspath(path)) from error
    return len(lines)


def _payload(lines: Sequence[bytes]) -> bytes:
    """The bytes of serialised lines in a file: each ends with a newline."""
    return b"\n".join(lines) + b"\n"


def _locked_write(fd: int, payload: bytes, *, wait: bool = True) -> None:
    """Write all of ``payload`` to a file opened with ``O_APPEND``, under its ``flock``.

    The lock keeps another process's append (a second worker, the CLI) from landing between
    two parts of a write that a file system splits. With ``wait=False`` a lock held elsewhere
    raises ``BlockingIOError`` at once instead of being waited for.
    """
    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        view = memoryview(payload)
        while view:  # a regular file takes it in one go; loop in case it does not
            view = view[os.write(fd, view):]
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _open_for_append(path: str | os.PathLike) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)


def check_writable(log_dir: str | os.PathLike, kind: str, *, test_mode: bool = False) -> None:
    """Raise ``LogWriteError`` unless this month's log of ``kind`` can be opened for appending."""
    path = log_path(log_dir, kind, test_mode=test_mode)
    try:
        os.close(_open_for_append(path))
    except OSError as error:
        raise LogWriteError(error.errno, error.strerror, os.fspath(path)) from error


def read_log(log_dir: str | os.PathLike, kind: str, *, test_mode: bool = False,
             month: str | None = None) -> list[dict]:
    """Read a log back: one month ("YYYY-MM") or, by default, every month in order.

    A missing log reads as an empty list; a corrupt line raises ``LogFormatError`` naming the
    file and the line.
    """
    if month is None:
        paths = log_files(log_dir, kind, test_mode=test_mode)
    else:
        paths = [log_path(log_dir, kind, test_mode=test_mode, month=month)]
    records: list[dict] = []
    for path in paths:
        if path.exists():
            records.extend(iter_records(path))
    return records


def iter_records(path: str | os.PathLike, *, since: str = "") -> Iterator[dict]:
    """The records of one log file, streamed in file order.

    Lines that start with their timestamp (as this module writes them) and are older than
    ``since`` (an ISO-8601 UTC timestamp) are skipped without being parsed. A corrupt line
    raises ``LogFormatError`` naming the file and the line.
    """
    cutoff = since.encode()
    start = len(_TIMESTAMP_PREFIX)
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, start=1):
            if cutoff and line.startswith(_TIMESTAMP_PREFIX) and (
                    line[start:start + len(cutoff)] < cutoff):
                continue
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                raise LogFormatError(f"{path}, line {number}: not a JSON object")
            yield record


def log_training(log_dir: str | os.PathLike, *, test_mode: bool, model_version: str,
                 runtime: float, input_data_summary: Mapping, details: Mapping) -> Path:
    """Write the record of one training run; ``details`` adds metrics, fingerprint, etc."""
    timestamp = utc_now()  # one clock read: the file's month is the timestamp's
    path = log_path(log_dir, "train", test_mode=test_mode, month=timestamp[:7])
    record = {
        "timestamp": timestamp,
        "model_version": model_version,
        "runtime": round(runtime, 6),
        "input_data_summary": dict(input_data_summary),
        **details,
    }
    append_records(path, [record])
    return path


class PredictedRequest(NamedTuple):
    """The predicted rows of one request, as the predict log records them."""

    request_id: str
    runtime: float
    rows: Sequence[Mapping]
    labels: Sequence[int]
    probabilities: Sequence[float]


def log_predictions(log_dir: str | os.PathLike, *, test_mode: bool, model_version: str,
                    request_id: str, runtime: float, rows: Sequence[Mapping],
                    labels: Sequence[int], probabilities: Sequence[float],
                    log_inputs: bool = True) -> Path:
    """Write one record per predicted row, all rows of a request in one append.

    ``runtime`` is the request's prediction time (shared by its rows); ``input`` is the row's
    feature values, left out when ``log_inputs`` is false (personal data).
    """
    request = PredictedRequest(request_id, runtime, rows, labels, probabilities)
    return log_prediction_requests(log_dir, test_mode=test_mode, model_version=model_version,
                                   requests=[request], log_inputs=log_inputs)


def log_prediction_requests(log_dir: str | os.PathLike, *, test_mode: bool,
                            model_version: str, requests: Sequence[PredictedRequest],
                            log_inputs: bool = True) -> Path:
    """Write the rows of several requests predicted together, in one append.

    Each row's record is the one ``log_predictions`` writes for its own request.
    """
    path, lines = prediction_lines(log_dir, test_mode=test_mode, model_version=model_version,
                                   requests=requests, log_inputs=log_inputs)
    append_lines(path, lines)
    return Path(path)


def prediction_lines(log_dir: str | os.PathLike, *, test_mode: bool, model_version: str,
                     requests: Sequence[PredictedRequest],
                     log_inputs: bool = True) -> tuple[str, list[bytes]]:
    """The predict log's file for now and the lines that record these requests' rows.

    One line per predicted row, all with the same timestamp, whose month names the file.
    """
    timestamp = utc_now()
    # The month comes from the timestamp itself, and a plain string path is cheaper than a
    # Path: this runs on every request.
    path = os.path.join(log_dir, _file_name("predict", test_mode, timestamp[:7]))
    # What lines share is serialised once, not once per line: the timestamp once per call, a
    # request's id once per request, and the version, runtime and input summary once per run of
    # requests alike in them (a batch's one-row requests share all three).
    start = orjson.dumps({"timestamp": timestamp})[:-1] + b',"request_id":'
    shape, shared = None, b""
    lines = []
    for request in requests:
        rows = request.rows
        n_rows = len(rows)
        n_features = len(rows[0]) if n_rows else 0
        if shape != (request.runtime, n_rows, n_features):
            shape = (request.runtime, n_rows, n_features)
            summary = {"model_version": model_version, "runtime": round(request.runtime, 6),
                       "input_data_summary": {"n_rows": n_rows, "n_features": n_features}}
            shared = b"," + orjson.dumps(summary)[1:-1] + b',"row":'
        request_id = orjson.dumps(request.request_id)
        for index, row in enumerate(rows):
            own = orjson.dumps(_row_fields(row, request.labels[index],
                                           request.probabilities[index], log_inputs),
                               option=orjson.OPT_SERIALIZE_NUMPY)
            lines.append(b"%s%s%s%d,%s" % (start, request_id, shared, index, own[1:]))
    return path, lines


def _row_fields(row: Mapping, label: int, probability: float,
                log_inputs: bool) -> dict[str, object]:
    """A predicted row's own fields in its log line; its input only when inputs are logged."""
    own: dict[str, object] = {"prediction": label, "probability": probability}
    if log_inputs:
        own["input"] = row
    return own


class LogWriter:
    """Appends lines to log files without ever making the caller's event loop wait on a file.

    What the service logs predictions through. ``append`` writes the lines and calls ``then``
    with None, or the ``LogWriteError`` that kept them from the file; a caller that answers only
    in ``then`` therefore answers only what the kernel has taken. An append is written at once,
    on the caller's thread, only when nothing in it can wait: the file is already open and is
    still the one at the path, no earlier append is still queued (the order is kept), its
    ``flock`` is free (a non-blocking attempt) and no recent write was slow. Such a write copies
    the bytes to the kernel's page cache, in microseconds, with no thread hand-off, which would
    cost more than the write (a wake-up each way). Everything else goes to a thread of its own:
    opening a file, a lock held by another process, every write for ``OFFLOAD_SECONDS`` after
    one that took over ``SLOW_WRITE_SECONDS`` (the kernel was waiting on the disk), and the
    appends behind those; the thread writes whatever is queued for the same file in one write
    and calls ``then`` back on the caller's loop.

    The file stays open between appends, with ``O_APPEND`` and the same ``flock`` per write
    as ``append_lines``; it is reopened when the path changes (a new month) or when the file
    at the path is no longer the one open (removed or rotated away). ``close`` writes
    everything queued before it, then stops the thread; a later ``append`` starts a new one.
    """

    _STOP = object()

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # (path, fd, (inode, device)) of the file kept open; _file_lock guards it, as the
        # thread and the caller both write to it.
        self._open: tuple[str, int, tuple[int, int]] | None = None
        self._file_lock = threading.Lock()
        self._queued = 0  # appends sent to the thread and not yet reported back
        self._offload_until = 0.0  # time.monotonic() until which every write is the thread's

    def append(self, path: str, lines: Sequence[bytes],
               then: Callable[[LogWriteError | None], object]) -> None:
        """Write ``lines`` to ``path``, then call ``then(error)`` on the running event loop.

        ``then`` runs before ``append`` returns when the lines could be written at once, later
        (on the same loop) when they went to the thread.
        """
        if not self._queued:
            outcome = self._write_now(path, lines)
            if not isinstance(outcome, _NotNow):
                then(outcome)
                return
        loop = asyncio.get_running_loop()
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._queued += 1
        self._queue.put((path, lines, loop, then))

    def close(self) -> None:
        """Write everything queued so far, stop the thread and close the file (blocks)."""
        with self._start_lock:
            thread = self._thread
            if thread is None:
                return
            self._queue.put(self._STOP)
            thread.join()
            self._thread = None

    def _write_now(self, path: str, lines: Sequence[bytes]) -> LogWriteError | None | _NotNow:
        """Write on this thread if nothing can wait: None, the error, or ``_NOT_NOW``."""
        if time.monotonic() < self._offload_until or not lines:
            return _NOT_NOW
        if not self._file_lock.acquire(blocking=False):  # the thread is using the file
            return _NOT_NOW
        started = time.perf_counter()
        try:
            try:
                fd = self._open_fd(path)
            except OSError:
                fd = None  # the thread finds out what is wrong and reports it
            if fd is None:
                return _NOT_NOW  # opening a file is the thread's: a first, a new month's
            try:
                _locked_write(fd, _payload(lines), wait=False)
            except BlockingIOError:
                return _NOT_NOW  # another process holds the lock: wait on the thread
            except OSError as error:
                self._close_file()  # the thread opens the file again
                return LogWriteError(error.errno, error.strerror, path)
            finally:
                self._note_duration(started)
            return None
        finally:
            self._file_lock.release()

    def _note_duration(self, started: float) -> None:
        """After a write slower than ``SLOW_WRITE_SECONDS``, the next ones are the thread's."""
        if time.perf_counter() - started > SLOW_WRITE_SECONDS:
            self._offload_until = time.monotonic() + OFFLOAD_SECONDS

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                # A daemon: an app that is never shut down (a test) does not hold the
                # interpreter open; the service drains it on shutdown (close).
                self._thread = threading.Thread(target=self._run, name="log-writer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while True:  # everything queued meanwhile goes in the same round
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # An append racing ``close`` may be queued after the stop: it is written too.
            stopping = any(item is self._STOP for item in batch)
            self._write_batch([item for item in batch if item is not self._STOP])
        with self._file_lock:
            self._close_file()

    def _write_batch(self, batch: list) -> None:
        """Write the queued appends, one write per run of the same path; report each."""
        done: dict = {}
        for path, same_path in itertools.groupby(batch, key=lambda item: item[0]):
            group = list(same_path)
            payload = b"".join(_payload(lines) for _, lines, _, _ in group if lines)
            error = self._write(path, payload) if payload else None
            for _, _, loop, then in group:
                done.setdefault(loop, []).append((then, error))
        for loop, calls in done.items():
            try:  # one wake-up per loop for the whole round
                loop.call_soon_threadsafe(self._report, calls)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _report(self, calls: list) -> None:
        """On the caller's loop: the thread's outcomes, in the order the appends came."""
        self._queued -= len(calls)
        for then, error in calls:
            then(error)

    def _write(self, path: str, payload: bytes) -> LogWriteError | None:
        with self._file_lock:
            try:
                fd = self._file(path)
                started = time.perf_counter()  # the write, not the opening
                _locked_write(fd, payload)
            except OSError as error:
                self._close_file()  # the next append opens the file again
                return LogWriteError(error.errno, error.strerror, path)
            self._note_duration(started)
            return None

    def _open_fd(self, path: str) -> int | None:
        """The file kept open, if it is ``path``'s and still the file at the path, else None.

        None too when the file was removed (a new one is made at the path) or moved away.
        """
        if self._open is None:
            return None
        open_path, fd, identity = self._open
        if open_path != path:
            return None
        try:
            here = os.stat(path)
        except FileNotFoundError:
            return None
        return fd if (here.st_ino, here.st_dev) == identity else None

    def _file(self, path: str) -> int:
        """The open file of ``path``, opened again if the one at the path is another."""
        fd = self._open_fd(path)
        if fd is not None:
            return fd
        self._close_file()
        fd = _open_for_append(path)
        opened = os.fstat(fd)
        self._open = (path, fd, (opened.st_ino, opened.st_dev))
        return fd

    def _close_file(self) -> None:
        if self._open is not None:
            os.close(self._open[1])
            self._open = None


class _NotNow:
    """What ``LogWriter._write_now`` returns when the append must go to the thread."""


_NOT_NOW = _NotNow()
