"""Extract features of a folder or manifest of videos into a feature store, resumably.

Plan (which clips are missing, changed or stale) → decode in worker processes with a time limit →
encode batches of videos in this process → commit each batch as one shard + one transaction.
A killed run loses at most the batch in flight; re-running picks up where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tvr.encoders.base import VideoEncoder
from tvr.errors import TvrError
from tvr.features.store import (
    EncoderInfo,
    Extracted,
    Failure,
    FeatureStore,
    FileIdentity,
    StoreEntry,
    clip_key,
    content_hash,
)
from tvr.features.workers import DecodeFn, DecodePool, DecodeResult, DecodeTask, PoolConfig, describe_error
from tvr.io.decoded import DecodedVideo
from tvr.io.manifest import Manifest, read_manifest

_MISSING = FileIdentity(size=-1, mtime_ns=-1, content_hash="")


@dataclass(frozen=True)
class ClipJob:
    """One distinct video clip to extract."""

    key: str
    path: Path
    start_s: float | None = None
    end_s: float | None = None


@dataclass
class ExtractReport:
    """What a run did. `total`, `ok` and `failed` describe the whole store after the run;
    `skipped` and `extracted` count this run's clips (up to date / newly written)."""

    total: int
    ok: int
    skipped: int
    extracted: int
    failed: list[dict[str, str]] = field(default_factory=list)  # {"path", "key", "error"}
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total, "ok": self.ok, "skipped": self.skipped, "extracted": self.extracted,
            "failed": self.failed, "elapsed_s": round(self.elapsed_s, 3),
        }


def plan_jobs(source: Path | Manifest | Sequence[ClipJob]) -> list[ClipJob]:
    """The distinct clips of a folder (searched recursively) or a manifest, in source order."""
    if isinstance(source, (list, tuple)):
        return _dedupe(source)
    if isinstance(source, Manifest):
        manifest = source
    else:
        source = Path(source)
        if source.is_dir():
            from tvr.io.discover import find_videos

            paths = find_videos(source)
            if not paths:
                raise TvrError(f"{source}: no video files found (searched recursively)")
            return _dedupe(ClipJob(clip_key(p), Path(p).resolve()) for p in paths)
        if not source.exists():
            raise TvrError(f"{source}: no such file or folder")
        manifest = read_manifest(source)
    return _dedupe(
        ClipJob(clip_key(manifest.path_of(e), e.start, e.end), manifest.path_of(e).resolve(), e.start, e.end)
        for e in manifest.entries
    )


def _dedupe(jobs: Iterable[ClipJob]) -> list[ClipJob]:
    """First occurrence of each key, in order (a clip named by several captions is extracted once)."""
    first: dict[str, ClipJob] = {}
    for job in jobs:
        first.setdefault(job.key, job)
    return list(first.values())


def extract_features(
    source: Path | Manifest | Sequence[ClipJob],
    encoder: VideoEncoder | str,
    store_dir: Path,
    *,
    workers: int = 2,
    batch_videos: int = 16,
    timeout_s: float = 120.0,
    progress: bool = True,
    retry_failed: bool = False,
    decode_fn: DecodeFn | None = None,
    ray: str | None = None,
) -> ExtractReport:
    """Extract every clip of `source` that the store lacks, or holds from a changed file or an older
    encoder version; failed clips are retried only with `retry_failed` or when their file changed.
    `decode_fn` (a module-level function) replaces `tvr.io.video.decode`, e.g. in tests. `ray`: decode on
    a Ray cluster ("local", "auto" or an address; `tvr.features.ray_pool`) instead of local processes."""
    if workers < 1:
        raise TvrError(f"--workers must be at least 1, got {workers}")
    if batch_videos < 1:
        raise TvrError(f"batch size must be at least 1, got {batch_videos}")
    if timeout_s <= 0:
        raise TvrError(f"timeout must be positive, got {timeout_s}")
    t0 = time.monotonic()
    jobs = plan_jobs(source)
    if isinstance(encoder, str):
        from tvr.encoders.registry import create_video_encoder

        encoder = create_video_encoder(encoder)
    if decode_fn is None:
        from tvr.io.video import decode as decode_fn
    info = EncoderInfo(encoder.name, encoder.version)
    store = FeatureStore(store_dir, create=True)
    try:
        with store.writing(info):
            run = _Run(store, encoder, info, batch_videos)
            todo = run.plan(jobs, retry_failed)
            config = PoolConfig(workers=workers, timeout_s=timeout_s, max_buffered=2 * batch_videos)
            if ray is not None:
                from tvr.features.ray_pool import RayDecodePool

                pool = RayDecodePool(decode_fn, encoder.decode_spec(), config, ray)
            else:
                pool = DecodePool(decode_fn, encoder.decode_spec(), config)
            tasks = (run.task(i, j) for i, j in enumerate(todo))
            with _Progress(len(todo), progress, skipped=run.skipped) as run.bar:
                for result in pool.imap(tasks) if todo else ():
                    run.take(todo[result.task_id], result)
                run.flush()
        failed = [{"path": e.path, "key": e.key, "error": e.error or ""} for e in store.entries() if e.status == "failed"]
        counts = store.counts()
        return ExtractReport(total=len(store), ok=counts.get("ok", 0), skipped=run.skipped,
                             extracted=run.extracted, failed=failed, elapsed_s=time.monotonic() - t0)
    finally:
        store.close()


class _Run:
    """State of one extraction run: the batch being filled and the counters."""

    def __init__(self, store: FeatureStore, encoder: VideoEncoder, info: EncoderInfo, batch_videos: int) -> None:
        self.store, self.encoder, self.info = store, encoder, info
        self.batch_videos = batch_videos
        self.bar = _Progress(0, False)
        self.identities: dict[str, FileIdentity] = {}
        self.batch: list[tuple[ClipJob, DecodedVideo]] = []
        self.skipped = 0
        self.extracted = 0

    def plan(self, jobs: Sequence[ClipJob], retry_failed: bool) -> list[ClipJob]:
        """Jobs to (re-)extract; records missing files as failed and counts the up-to-date ones."""
        todo, missing = [], []
        rows = {e.key: e for e in self.store.entries()}  # one query, not one per video
        for job in jobs:
            try:
                st = job.path.stat()
            except OSError as exc:
                missing.append(Failure(job.key, str(job.path), job.start_s, job.end_s, _MISSING,
                                       f"cannot read file: {exc.strerror or exc}"))
                continue
            row = rows.get(job.key)
            if row is not None and self._unchanged(row, job, st.st_size, st.st_mtime_ns):
                if row.status == "ok" or not retry_failed:
                    self.skipped += 1
                    continue
            todo.append(job)
        if missing:
            self.store.commit([], missing, encoder=self.info)
        return todo

    def _unchanged(self, row: StoreEntry, job: ClipJob, size: int, mtime_ns: int) -> bool:
        if (row.encoder_name, row.encoder_version) != (self.info.name, self.info.version) or row.size != size:
            return False
        if row.mtime_ns == mtime_ns:
            return True
        identity = FileIdentity(size, mtime_ns, content_hash(job.path, size))
        self.identities[job.key] = identity
        if identity.content_hash != row.content_hash:
            return False
        self.store.touch(job.key, identity)  # touched but identical: remember the new mtime
        return True

    def task(self, task_id: int, job: ClipJob) -> DecodeTask:
        """The decode task of `job`, measuring the file first: a file that changes while it is being
        decoded is then seen as changed by the next run."""
        if job.key not in self.identities:
            try:
                st = job.path.stat()
                self.identities[job.key] = FileIdentity(st.st_size, st.st_mtime_ns, content_hash(job.path, st.st_size))
            except OSError:
                self.identities[job.key] = _MISSING  # vanished since planning: the decode fails and says so
        return DecodeTask(task_id, str(job.path), job.start_s, job.end_s)

    def identity(self, job: ClipJob) -> FileIdentity:
        """The identity measured by `task` (used once per job, so it is dropped here)."""
        return self.identities.pop(job.key, _MISSING)

    def take(self, job: ClipJob, result: DecodeResult) -> None:
        if result.video is None:
            self._fail([(job, result.error or "decode failed")])
            return
        self.batch.append((job, result.video))
        if len(self.batch) >= self.batch_videos:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        done, failed = self._encode(batch)
        self.store.commit(done, [self._failure(j, e) for j, e in failed], encoder=self.info)
        self.extracted += len(done)
        self.bar.advance(len(batch), failed=len(failed))

    def _encode(self, batch: list[tuple[ClipJob, DecodedVideo]]) -> tuple[list[Extracted], list[tuple[ClipJob, str]]]:
        """Encode the batch in one call; if that fails, video by video so one bad video fails alone."""
        try:
            outs = self._checked(self.encoder.encode([v for _, v in batch]), len(batch))
        except Exception:  # noqa: BLE001 - retry singly to find the culprit(s)
            outs = None
        if outs is not None:
            return [self._extracted(j, v, o) for (j, v), o in zip(batch, outs, strict=True)], []
        done, failed = [], []
        for job, video in batch:
            try:
                (out,) = self._checked(self.encoder.encode([video]), 1)
                done.append(self._extracted(job, video, out))
            except Exception as exc:  # noqa: BLE001 - record and go on (DESIGN §8)
                failed.append((job, f"encode failed: {describe_error(exc)}"))
        return done, failed

    def _checked(self, outs: Any, n: int) -> list[dict[str, np.ndarray]]:
        if not isinstance(outs, list) or len(outs) != n:
            raise ValueError(f"encoder {self.info.name!r} returned {type(outs).__name__} for {n} videos")
        clean = []
        for out in outs:
            arrays = {str(k): np.asarray(v) for k, v in out.items()}
            if not arrays or any("/" in k for k in arrays):
                raise ValueError(f"encoder {self.info.name!r} returned bad feature names {sorted(arrays)}")
            clean.append(arrays)
        return clean

    def _extracted(self, job: ClipJob, video: DecodedVideo, out: dict[str, np.ndarray]) -> Extracted:
        return Extracted(job.key, str(job.path), job.start_s, job.end_s, self.identity(job),
                         float(video.duration_s), out)

    def _failure(self, job: ClipJob, error: str) -> Failure:
        return Failure(job.key, str(job.path), job.start_s, job.end_s, self.identity(job), error)

    def _fail(self, failures: list[tuple[ClipJob, str]]) -> None:
        self.store.commit([], [self._failure(j, e) for j, e in failures], encoder=self.info)
        self.bar.advance(len(failures), failed=len(failures))


class _Progress:
    """Videos done, videos/s, ETA and failures on stderr (a bar on a terminal, plain lines elsewhere)."""

    def __init__(self, total: int, enabled: bool, skipped: int = 0) -> None:
        from tvr.progress import ProgressReport

        self.skipped = skipped
        self.failures = 0
        self.report = ProgressReport("extract", total, "videos", enabled=enabled, detail=self._detail())

    def __enter__(self) -> _Progress:
        self.report.__enter__()
        return self

    def advance(self, n: int, failed: int = 0) -> None:
        self.failures += failed
        self.report.advance(n, detail=self._detail())

    def __exit__(self, *exc: object) -> None:
        self.report.__exit__(*exc)

    def _detail(self) -> str:
        return f"{self.failures} failed" + (f", {self.skipped} up to date" if self.skipped else "")
