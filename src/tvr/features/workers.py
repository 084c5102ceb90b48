"""A pool of decode worker processes with a per-video time limit.

Native decoders sometimes hang or crash on real files. Each worker decodes one video at a time and
talks to the pool over its own pipe, so a worker that exceeds the time limit (or dies) is killed and
replaced without disturbing the others, and its video is reported as failed. A manager thread keeps
the workers busy while the caller encodes, so decoding and encoding overlap.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from tvr.io.decoded import DecodedVideo, DecodeSpec

# decode_fn(path, spec, start_s, end_s) -> DecodedVideo; must be a module-level function (it is
# sent to spawned workers by reference).
DecodeFn = Callable[[Path, DecodeSpec, "float | None", "float | None"], DecodedVideo]


@dataclass(frozen=True)
class DecodeTask:
    task_id: int
    path: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class DecodeResult:
    task_id: int
    video: DecodedVideo | None
    error: str | None  # set when video is None


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 2
    timeout_s: float = 120.0  # per video, from hand-off to the worker until its result arrives
    max_buffered: int = 32  # decoded videos waiting for the caller before workers get no new work
    start_method: str = "spawn"  # never fork: the caller may hold threads, torch or open decoders


def describe_error(exc: BaseException) -> str:
    """One line naming what went wrong (user-facing errors keep their message as is)."""
    from tvr.errors import TvrError

    msg = " ".join(str(exc).split()) or exc.__class__.__name__
    return msg if isinstance(exc, TvrError) else f"{exc.__class__.__name__}: {msg}"


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the pool's process dies (even by kill -9)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def decode_one(decode_fn: DecodeFn, spec: DecodeSpec, task: DecodeTask) -> DecodeResult:
    """The per-video function every pool runs (local worker processes, Ray tasks): the decoded video,
    or this video's failure as one line."""
    try:
        return DecodeResult(task.task_id, decode_fn(Path(task.path), spec, task.start_s, task.end_s), None)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this video's failure
        return DecodeResult(task.task_id, None, describe_error(exc))


def _worker_main(conn: Connection, decode_fn: DecodeFn, spec: DecodeSpec, parent_pid: int) -> None:
    _die_with_parent()
    if os.getppid() != parent_pid:  # parent died before prctl took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pool's to handle
    conn.send(_READY)  # the time limit starts with a task, not with the (slow) process start-up
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result = decode_one(decode_fn, spec, task)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return
        del result
        # decoders left in reference cycles keep their native codec threads until a GC pass;
        # the worker's heap is tiny, so collecting after every video is cheap
        gc.collect()


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, decode_fn: DecodeFn, spec: DecodeSpec) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, decode_fn, spec, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.task: DecodeTask | None = None
        self.deadline = 0.0
        self.ready = False

    def poll_ready(self) -> bool:
        """True once the worker has started; a worker that dies while starting is a bug, not a video's fault."""
        if not self.ready and self.conn.poll():
            try:
                self.ready = self.conn.recv() == _READY
            except (EOFError, OSError):
                raise RuntimeError(f"decode worker failed to start (exit code {self.proc.exitcode})") from None
        if not self.ready and not self.proc.is_alive() and not self.conn.poll():
            raise RuntimeError(f"decode worker failed to start (exit code {self.proc.exitcode})")
        return self.ready

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(None)
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


class DecodePool:
    """`imap(tasks)` yields one `DecodeResult` per task, in completion order."""

    def __init__(self, decode_fn: DecodeFn, spec: DecodeSpec, config: PoolConfig = PoolConfig()) -> None:
        if config.workers < 1:
            raise ValueError("DecodePool needs at least one worker")
        self._decode_fn = decode_fn
        self._spec = spec
        self._cfg = config
        self._ctx = mp.get_context(config.start_method)

    def imap(self, tasks: Iterable[DecodeTask]) -> Iterator[DecodeResult]:
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        manager = threading.Thread(target=self._manage, args=(iter(tasks), out, stop), daemon=True)
        manager.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            manager.join()

    def _manage(self, tasks: Iterator[DecodeTask], out: queue.Queue, stop: threading.Event) -> None:
        workers: list[_Worker] = []
        try:
            workers = [_Worker(self._ctx, self._decode_fn, self._spec) for _ in range(self._cfg.workers)]
            exhausted = False
            while not stop.is_set():
                if not exhausted:
                    exhausted = self._assign(workers, tasks, out)
                busy = [w for w in workers if w.task is not None]
                if exhausted and not busy:
                    break
                starting = [] if exhausted else [w.conn for w in workers if not w.ready]
                ready = set(wait([w.conn for w in busy] + starting, timeout=0.05))
                if not busy and not starting:
                    time.sleep(0.05)  # back-pressure: the caller has enough decoded videos
                now = time.monotonic()
                for i, w in enumerate(workers):
                    if w.task is None:
                        continue
                    if w.conn in ready:
                        result, healthy = self._receive(w)
                    elif now > w.deadline:
                        why = f"decode timed out after {self._cfg.timeout_s:g} s (decoder process killed)"
                        result, healthy = DecodeResult(w.task.task_id, None, why), False
                        w.task = None
                    else:
                        continue
                    out.put(result)
                    if not healthy:
                        w.kill()
                        workers[i] = _Worker(self._ctx, self._decode_fn, self._spec)
        except BaseException as exc:  # noqa: BLE001 - hand the error to the caller's thread
            out.put(exc)
        finally:
            for w in workers:
                if w.task is not None:
                    w.kill()
                else:
                    w.stop()
            out.put(_DONE)

    def _assign(self, workers: list[_Worker], tasks: Iterator[DecodeTask], out: queue.Queue) -> bool:
        """Hand tasks to idle workers; True once `tasks` is exhausted."""
        for w in workers:
            if w.task is not None or not w.poll_ready() or out.qsize() >= self._cfg.max_buffered:
                continue
            task = next(tasks, None)
            if task is None:
                return True
            w.conn.send(task)
            w.task = task
            w.deadline = time.monotonic() + self._cfg.timeout_s
        return False

    def _receive(self, w: _Worker) -> tuple[DecodeResult, bool]:
        """The worker's result and whether the worker is still usable (False: it died)."""
        task = w.task
        assert task is not None
        w.task = None
        try:
            return w.conn.recv(), True
        except (EOFError, OSError):
            w.proc.join(timeout=5)
            code = w.proc.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return DecodeResult(task.task_id, None, f"decoder process died ({how})"), False


_DONE = object()
_READY = "ready"
