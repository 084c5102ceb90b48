"""Decoding on a Ray cluster: the same per-video function as the local worker pool, as Ray tasks.

`RayDecodePool.imap(tasks)` has `DecodePool.imap`'s contract, so `extract_features` keeps its one
writer of the feature store, its resume, its failure records and its exactly-once commits; only
where `decode_one` runs changes. Results stream back as they finish. The per-video time limit is
kept: a task running longer is cancelled (its worker process killed) and the video recorded as
failed. At most one task per cluster CPU is in flight, so a task's clock starts when it can run.

Ray Data's `map` would run the same function, but has no per-row time limit or cancellation, and
its `read_videos` decodes with decord (which hangs and leaks); plain Ray tasks give both.

`address`: "local" starts Ray on this machine (CPUs = the `workers` setting), "auto" joins the
cluster `ray start` runs here (or RAY_ADDRESS), anything else is a cluster address
("ray://HOST:10001", "HOST:6379"). When Ray is already initialised in the process, it is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from tvr.errors import TvrError
from tvr.features.workers import DecodeFn, DecodeResult, DecodeTask, PoolConfig, decode_one
from tvr.io.decoded import DecodeSpec

POLL_S = 0.05


def connect(address: str, workers: int) -> Any:
    """The `ray` module, initialised for `address` (see the module docstring)."""
    try:
        import ray
    except ImportError:
        raise TvrError("--ray needs Ray: pip install -e .[ray]") from None
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise TvrError(f"cannot reach a Ray cluster at {address!r} ({str(exc).splitlines()[0]})") from None
    return ray


class RayDecodePool:
    """`imap(tasks)` yields one `DecodeResult` per task, in completion order, decoded by Ray tasks."""

    def __init__(self, decode_fn: DecodeFn, spec: DecodeSpec, config: PoolConfig, address: str) -> None:
        self._ray = connect(address, config.workers)
        self._decode_fn, self._spec, self._cfg = decode_fn, spec, config
        self._remote = self._ray.remote(num_cpus=1, max_retries=0)(decode_one)

    def imap(self, tasks: Iterable[DecodeTask]) -> Iterator[DecodeResult]:
        ray = self._ray
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[Any, tuple[DecodeTask, float]] = {}
        todo = iter(tasks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < slots:
                    task = next(todo, None)
                    if task is None:
                        exhausted = True
                        break
                    pending[self._remote.remote(self._decode_fn, self._spec, task)] = (task, time.monotonic())
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    task, _ = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker process died
                        yield DecodeResult(task.task_id, None, f"decoder worker failed ({type(exc).__name__})")
                now = time.monotonic()
                for ref, (task, started) in list(pending.items()):
                    if now - started > self._cfg.timeout_s:
                        ray.cancel(ref, force=True)
                        pending.pop(ref)
                        yield DecodeResult(task.task_id, None,
                                           f"decode timed out after {self._cfg.timeout_s:g} s (Ray task cancelled)")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
