"""Reading a message where no message can stop the service: in a worker process.

Parsing and reading a message (``message.analyse``) is pure CPU work on text an
unauthenticated sender chose. ``re`` and the email parser hold the GIL while they work,
so in a thread a message that reads slowly would hold up the event loop (IDLE, the
console, ``/healthz``, every other instance). So each message is read in one of a few
worker processes, started once and kept, under a wall-clock limit
(``[parsing] analysis_timeout_seconds``). A worker past the limit is killed and replaced,
and the message is filed as failed, as too complex to read: never answered, and never
read again (it leaves the inbox).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from responder.config import ParsingSettings
from responder.reading.decision import DEFAULT_GRAMMAR, Grammar
from responder.reading.message import Facts, analyse, nothing_read

log = logging.getLogger("responder")

PROCESSES = 2  # at most this many messages are read at once, over every instance
START_SECONDS = 120.0  # a new worker's imports, on a busy machine; not the message's time
Work = Callable[[bytes, ParsingSettings, Grammar], Facts]


class AnalysisUnavailable(RuntimeError):
    """No worker process could be started: the caller reads the message itself."""


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    ready: bool = False  # it said so once its imports were done

    def stop(self) -> None:
        """Kill it (it may be deep in a regular expression: no asking nicely) and reap it."""
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


def too_complex(raw: bytes, seconds: float) -> Facts:
    """The facts of a message not read within the limit: no sender, so never answered."""
    return nothing_read(raw, unreadable=f"message too complex to read: not read within "
                                        f"{seconds:g} s (parsing.analysis_timeout_seconds)")


class Analyser:
    """A few worker processes that read messages, each under a wall-clock limit.

    ``analyse`` blocks (call it from a thread) and is safe to call from several threads
    and event loops at once; a worker killed or lost is replaced by a fresh one.
    """

    def __init__(self, processes: int = PROCESSES, work: Work = analyse) -> None:
        self.work = work  # a module-level function: it is sent to the worker by name
        # spawn: a fresh interpreter, not a fork of one with threads and open sockets
        self._context = multiprocessing.get_context("spawn")
        self._slots = threading.BoundedSemaphore(processes)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False

    def analyse(self, raw: bytes, parsing: ParsingSettings,
                grammar: Grammar = DEFAULT_GRAMMAR) -> Facts:
        """Read ``raw`` in a worker; too complex when it takes over the limit."""
        limit = parsing.analysis_timeout_seconds
        request = (self.work, raw, parsing, grammar)
        with self._slots:
            worker = self._checkout()
            try:
                self._send(worker, request)
            except (OSError, ValueError):  # it died while idle: a fresh one tries
                worker.stop()
                worker = self._checkout()
                self._send(worker, request)
            return self._result(worker, raw, limit)

    def _send(self, worker: _Worker, request: tuple[Any, ...]) -> None:
        try:
            worker.conn.send(request)
        except pickle.PicklingError:  # pickled before a byte is sent: the worker is fine
            self._checkin(worker)
            raise

    def _result(self, worker: _Worker, raw: bytes, limit: float) -> Facts:
        try:
            ready = worker.conn.poll(limit)
            answer = worker.conn.recv() if ready else None
        except (EOFError, OSError) as exc:
            worker.stop()
            self._replace()
            code = worker.process.exitcode
            log.warning("the process reading a message stopped (exit code %s): %s", code, exc)
            return nothing_read(raw, unreadable=f"message too complex to read: the process "
                                                f"reading it stopped (exit code {code})")
        if answer is None:
            worker.stop()
            self._replace()
            log.warning("a message was not read within %.1f s: its reader was stopped", limit)
            return too_complex(raw, limit)
        self._checkin(worker)
        if isinstance(answer, Facts):
            return answer
        return nothing_read(raw, unreadable=f"cannot read message: {answer}"[:300])

    def start(self) -> None:
        """Start one worker now, so that the first message does not wait for it."""
        with self._lock:
            if self._idle:
                return
        self._replace()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def _checkout(self) -> _Worker:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        return self._ready(worker or self._spawn())

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.stop()

    def _replace(self) -> None:
        """A fresh worker in the place of one stopped, starting in the background."""
        try:
            worker = self._spawn()
        except AnalysisUnavailable as exc:
            log.warning("%s", exc)
            return
        self._checkin(worker)

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, os.getpid()),
                                         daemon=True, name="responder-reader")
        try:
            _spawner().submit(process.start).result()
        except OSError as exc:
            ours.close()
            raise AnalysisUnavailable(f"cannot start a process to read messages: {exc}") from exc
        finally:
            theirs.close()
        return _Worker(process, ours)

    def _ready(self, worker: _Worker) -> _Worker:
        """Wait for a new worker's imports (its start is not counted against a message)."""
        if worker.ready:
            return worker
        try:
            if worker.conn.poll(START_SECONDS) and worker.conn.recv() == _READY:
                worker.ready = True
                return worker
        except (EOFError, OSError):
            pass
        worker.stop()
        raise AnalysisUnavailable("the process to read messages did not start "
                                  f"(exit code {worker.process.exitcode})")


_READY = "ready"


def _serve(conn: Connection, parent: int) -> None:
    """The worker: read each message sent, answer its facts (or why not), until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the service, which stops us
    _die_with(parent)
    conn.send(_READY)
    while True:
        try:
            work, raw, parsing, grammar = conn.recv()
        except (EOFError, OSError):
            return
        answer: Any
        try:
            answer = work(raw, parsing, grammar)
        except Exception as exc:  # analyse never raises; a bug must still answer
            answer = f"{type(exc).__name__}: {exc}"
        try:
            conn.send(answer)
        except (OSError, ValueError):
            return
        except Exception as exc:  # facts that do not pickle: say so instead
            conn.send(f"{type(exc).__name__}: {exc}")


def _die_with(parent: int) -> None:
    """Be killed when the service dies, even deep in a regular expression (Linux).

    Otherwise the service's end (SIGKILL, a crash) would leave a worker stuck on a
    hostile message burning a CPU: the pipe's EOF is only seen between messages.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(0)


_PR_SET_PDEATHSIG = 1  # Linux: the signal comes when the *thread* that started us ends,
_spawning: ThreadPoolExecutor | None = None  # so one thread, alive as long as the service
_spawning_lock = threading.Lock()


def _spawner() -> ThreadPoolExecutor:
    """The thread every worker is started from (not a passing executor thread)."""
    global _spawning
    with _spawning_lock:
        if _spawning is None:
            _spawning = ThreadPoolExecutor(1, thread_name_prefix="responder-spawner")
        return _spawning


_shared: Analyser | None = None
_shared_lock = threading.Lock()


def shared() -> Analyser:
    """The analyser every instance in this process uses, created when first needed."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Analyser()
            atexit.register(_shared.close)
        return _shared
