"""Build or update an index: decode (through the feature store), encode, write one generation.

The model is a `tvr train` run directory, or a pretrained CLIP used zero-shot (`ZeroShotSpec`:
CLIP4Clip-meanP over its towers, nothing trained). Re-running on the same folder is an update: a
clip whose file is unchanged (same size and content hash, the store's identity) keeps its stored
embedding when the model, its config and the frame sampling are the same; only new or changed clips
are encoded, and deleted ones drop out. The result is the same as a full rebuild, written as a new
generation like one, so an interrupted update leaves the previous index searchable.

Frames come from the same "pixels" feature store the trainer and evaluator use (decoded once,
resumable, failures recorded and skipped), expert streams from the stores beside it
(`tvr.data.streams.extract_streams`), batches from the same `Clips` code, embeddings from the
evaluator's `encode_clips`. Everything the search needs (model copy, FAISS vectors, the whole
VideoEmb, item metadata, querybank statistics) goes into a fresh `data-<id>` folder that
`index.json` then points at (see `tvr.index.layout`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tvr.atomic import atomic_write_json, commit_temp, temp_path_beside
from tvr.errors import TvrError
from tvr.index import layout
from tvr.index.items import Item, file_identity
from tvr.index.querybank_texts import querybank_captions
from tvr.models.zero_shot import ZeroShotSpec

DEFAULT_STORE = "frames"  # inside the checkpoint's run directory (zero-shot: the index directory)


@dataclass(frozen=True)
class BuildOptions:
    """How to build; `store=None` reuses the checkpoint's own frame store (RUN_DIR/frames)."""

    kind: str = "auto"
    store: Path | None = None
    querybank: Path | None = None
    workers: int = 2
    device: str = "cpu"
    force: bool = False
    progress: bool = True
    batch_size: int = 32
    ray: str | None = None  # decode on Ray ("local", "auto" or an address) instead of local processes
    backend: str = "faiss"  # or "milvus": the vectors in Milvus collections at `uri`
    uri: str | None = None  # Milvus: a milvus-lite file path, or http://HOST:19530
    shards: int | None = None  # > 1: that many indexes over disjoint items (by name hash); None: as OUT is (1 if new)
    beta: float = 20.0  # QB-Norm defaults on cosine scores
    dis_k: int = 1
    csls_k: int = 10


@dataclass(frozen=True)
class BuildReport:
    index_dir: Path
    method: str
    kind: str
    n_items: int
    failed: list[dict[str, str]]
    querybank_size: int
    querybank_source: str | None
    extract: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    n_encoded: int = 0  # clips run through the model by this build
    n_reused: int = 0  # clips whose embedding came unchanged from the previous generation
    n_dropped: int = 0  # items of the previous generation no longer in the source
    zero_shot: dict[str, Any] | None = None  # the pretrained model's identity, for a zero-shot index

    def to_json(self) -> dict[str, Any]:
        return {
            "index_dir": str(self.index_dir), "method": self.method, "kind": self.kind, "n_items": self.n_items,
            "n_failed": len(self.failed), "failed": self.failed, "querybank_size": self.querybank_size,
            "querybank_source": self.querybank_source, "extract": self.extract, "elapsed_s": round(self.elapsed_s, 3),
            "n_encoded": self.n_encoded, "n_reused": self.n_reused, "n_dropped": self.n_dropped,
            "zero_shot": self.zero_shot,
        }


@dataclass(frozen=True)
class GallerySource:
    """The distinct clips of a folder or manifest, in source order, with their display names."""

    jobs: list[Any]  # tvr.features.extract.ClipJob
    names: dict[str, str]  # store key → name as the user wrote it


def gallery_source(source: Path) -> GallerySource:
    from tvr.features.extract import ClipJob
    from tvr.features.store import clip_key
    from tvr.io.manifest import read_manifest

    source = Path(source)
    jobs, names = [], {}
    if source.is_dir():
        from tvr.io.discover import find_videos

        paths = find_videos(source)
        if not paths:
            raise TvrError(f"{source}: no video files found (searched recursively)")
        for p in paths:
            key = clip_key(p)
            if key not in names:
                jobs.append(ClipJob(key, p.resolve()))
                names[key] = p.relative_to(source).as_posix()
    elif source.is_file():
        manifest = read_manifest(source)
        for e in manifest.entries:
            path = manifest.path_of(e)
            key = clip_key(path, e.start, e.end)
            if key not in names:
                jobs.append(ClipJob(key, path.resolve(), e.start, e.end))
                names[key] = e.video_key
    else:
        raise TvrError(f"{source}: no such folder or manifest")
    return GallerySource(jobs, names)


def build_index(
    source: Path, checkpoint: Path | ZeroShotSpec, out: Path, options: BuildOptions = BuildOptions()
) -> BuildReport:
    """Index (or update the index of) every decodable clip of `source` into `out`, with the model of a
    `tvr train` run directory or a pretrained CLIP used zero-shot."""
    from tvr.devices import resolve_device
    from tvr.index.vector_index import IndexSpec

    t0 = time.monotonic()
    spec = IndexSpec(kind=options.kind)  # bad kind: fail before any work
    if options.workers < 1:
        raise TvrError(f"--workers must be at least 1, got {options.workers}")
    if options.backend not in layout.BACKENDS:
        raise TvrError(f"--backend must be one of {', '.join(layout.BACKENDS)}, got {options.backend!r}")
    if (options.backend == "milvus") != bool(options.uri):
        raise TvrError("--backend milvus needs --uri (a milvus-lite file or http://HOST:19530); --uri goes with it only")
    if options.shards is None:  # an update keeps the index's split
        options = replace(options, shards=existing_shards(Path(out)))
    if options.shards < 1:
        raise TvrError(f"--shards must be at least 1, got {options.shards}")
    if options.shards > 1 and options.backend != "faiss":
        raise TvrError("--shards splits a FAISS index; a Milvus collection is sharded by Milvus itself")
    if options.backend == "milvus":
        from tvr.index.milvus_index import client_for

        client_for(options.uri)  # an unreachable server or a missing pymilvus: fail before any work
    device = resolve_device(options.device)
    out = Path(out)
    if isinstance(checkpoint, ZeroShotSpec):
        model_source = _ZeroShotSource(checkpoint)
        store_default = out / DEFAULT_STORE
    else:
        model_source = _RunSource(Path(checkpoint))
        store_default = Path(checkpoint) / DEFAULT_STORE
    options = replace(options, store=Path(options.store) if options.store is not None else store_default)
    _check_target(out, options)
    gallery = gallery_source(source)
    bank_texts, bank_source = model_source.querybank(options.querybank)
    with layout.writer_lock(out):
        info, counts = _build_locked(model_source, out, gallery, bank_texts, bank_source, spec, device, options, source)
    kind = f"{info.kind}, {options.shards} shards" if options.shards > 1 else info.kind
    return BuildReport(
        index_dir=out, method=info.method, kind=kind, n_items=info.n_items, failed=info.failed,
        querybank_size=len(bank_texts), querybank_source=bank_source, extract=counts.pop("extract"),
        elapsed_s=time.monotonic() - t0, zero_shot=model_source.identity, **counts,
    )


class _RunSource:
    """The model of a `tvr train` run directory: its files are copied into the index as they are."""

    def __init__(self, run_dir: Path) -> None:
        from tvr.models.registry import WEIGHTS_FILE, read_checkpoint_config

        _, _, self.doc = read_checkpoint_config(run_dir)  # a clear error for a non-checkpoint
        if not (run_dir / WEIGHTS_FILE).is_file():
            raise TvrError(f"{run_dir / WEIGHTS_FILE}: missing")
        self.run_dir = run_dir
        self.identity = None

    def querybank(self, querybank: Path | None) -> tuple[list[str], str | None]:
        return querybank_captions(querybank, self.run_dir, self.doc)

    def write(self, model_dir: Path) -> None:
        from tvr.models.registry import CONFIG_FILE, WEIGHTS_FILE

        for name in (CONFIG_FILE, WEIGHTS_FILE):  # copied first: what is indexed is exactly what is stored
            _copy_atomic(self.run_dir / name, model_dir / name)


class _ZeroShotSource:
    """A pretrained CLIP as CLIP4Clip-meanP: the model is built once and saved into the index."""

    def __init__(self, spec: ZeroShotSpec) -> None:
        from tvr.models.zero_shot import source_identity, zero_shot_model

        self.model = zero_shot_model(spec)  # a checkpoint that is not CLIP fails here, before any decoding
        self.identity = source_identity(spec)

    def querybank(self, querybank: Path | None) -> tuple[list[str], str | None]:
        return querybank_captions(querybank, None, {})

    def write(self, model_dir: Path) -> None:
        from tvr.models.registry import save_model

        save_model(self.model, model_dir, extra={"zero_shot": self.identity})


def _build_locked(
    model_source: _RunSource | _ZeroShotSource, out: Path, gallery: GallerySource, bank_texts: list[str],
    bank_source: str | None, spec: Any, device: Any, options: BuildOptions, source: Path,
) -> tuple[layout.IndexInfo | layout.ShardSetInfo, dict[str, Any]]:
    """Write a new generation and commit it; the caller holds the index's writer lock."""
    from tvr.models.registry import WEIGHTS_FILE

    data_dir = layout.new_data_dir(out)
    try:
        model_dir = data_dir / "model"
        model_dir.mkdir()
        model_source.write(model_dir)
        model_sha = layout.sha256_file(model_dir / WEIGHTS_FILE)
        _check_same_model(out, model_sha, options.force)
        info, counts = _build_generation(
            out, data_dir, gallery, bank_texts, bank_source, spec, device, options, model_sha, str(source),
            getattr(model_source, "model", None),
        )
        if isinstance(info, layout.ShardSetInfo):
            layout.commit_shard_set(out, info)
        else:
            layout.commit(out, info)
    except BaseException:
        layout.drop_collections(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return info, counts


def _build_generation(
    out: Path, data_dir: Path, gallery: GallerySource, bank_texts: list[str], bank_source: str | None,
    spec: Any, device: Any, options: BuildOptions, model_sha: str, source: str, model: Any = None,
) -> tuple[layout.IndexInfo | layout.ShardSetInfo, dict[str, Any]]:
    """Encode what changed, reuse the rest, write every file of the generation in `data_dir`.

    `model`: the model whose weights `data_dir/model` holds, already in memory (zero-shot); None:
    loaded from there."""
    import torch

    from tvr.data.clips import Clips
    from tvr.data.streams import extract_streams, pixels_encoder
    from tvr.features.extract import extract_features
    from tvr.features.store import FeatureStore
    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model
    from tvr.postproc.querybank import QueryBank

    model = load_model(data_dir / "model", device=device) if model is None else model.to(device)
    input_spec = model.input_spec()
    assert options.store is not None  # resolved by build_index
    store_dir = options.store
    pixels = pixels_encoder(input_spec)
    extract = extract_features(gallery.jobs, pixels, store_dir, workers=options.workers, progress=options.progress,
                               ray=options.ray)
    extract_streams(gallery.jobs, input_spec, store_dir, workers=options.workers, progress=options.progress, ray=options.ray)
    with FeatureStore(store_dir) as store:
        rows = {j.key: store.entry(j.key) for j in gallery.jobs}
    ok = [j for j in gallery.jobs if rows[j.key] is not None and rows[j.key].status == "ok"]
    ok_keys = {j.key for j in ok}
    failed = [
        {"path": str(j.path), "key": j.key, "error": (rows[j.key].error if rows[j.key] else None) or "not decoded"}
        for j in gallery.jobs if j.key not in ok_keys
    ]
    if not ok:
        raise TvrError(f"{source}: none of its {len(gallery.jobs)} videos could be decoded (first error: {failed[0]['error']})")

    fingerprints = {
        "sampling": {"pixels": pixels.version, "streams": list(input_spec.streams)},
        "items": {j.key: [rows[j.key].size, rows[j.key].content_hash] for j in ok},
    }
    config_sha = layout.sha256_file(data_dir / layout.FILE_NAMES[layout.MODEL_CONFIG])
    previous = previous_generation(out, model_sha, config_sha, fingerprints["sampling"])
    reused = {} if previous is None else {
        j.key: previous.rows[j.key] for j in ok
        if j.key in previous.rows and previous.fingerprints.get(j.key) == fingerprints["items"][j.key]
    }
    fresh = [j.key for j in ok if j.key not in reused]
    with torch.no_grad():
        parts, place = [], {}
        if reused:
            parts.append(previous.gallery.select(list(reused.values())))
            place.update({key: n for n, key in enumerate(reused)})
        if fresh:
            clips = Clips(store_dir, fresh, input_spec)
            try:
                parts.append(encode_clips(model, clips, device, batch_size=options.batch_size).to("cpu"))
            finally:
                clips.close()
            place.update({key: len(reused) + n for n, key in enumerate(fresh)})
        emb = type(parts[0]).cat(parts) if len(parts) > 1 else parts[0]
        emb = emb.select([place[j.key] for j in ok]).to(device)  # source order, as a full build writes it
        vectors = (model.gallery_vectors(emb) if model.inner_product else model.candidate_vectors(emb)).float()
        bank = None
        if bank_texts:
            bank_bg = score_matrix(model, encode_texts(model, bank_texts, device), emb)
            bank = QueryBank.from_scores(bank_bg, beta=options.beta, dis_k=options.dis_k, csls_k=options.csls_k)
    emb = emb.to("cpu")
    vectors_np = vectors.cpu().numpy().astype(np.float32)
    items = [
        Item(j.key, gallery.names[j.key], str(j.path), j.start_s, j.end_s, rows[j.key].duration_s, _identity(j.path))
        for j in ok
    ]
    whole = _GenerationData(
        method=model.method, inner_product=bool(model.inner_product), emb=emb, vectors=vectors_np, items=items,
        fingerprints=fingerprints, bank=bank, bank_texts=list(bank_texts), bank_source=bank_source,
    )
    counts = {"n_encoded": len(fresh), "n_reused": len(reused),
              "n_dropped": 0 if previous is None else sum(1 for key in previous.rows if key not in ok_keys)}
    common = {"model_sha": model_sha, "failed": failed, "source": source}
    if options.shards > 1:
        info = _write_shards(out, data_dir, whole, spec, options, **common)
    else:
        info = _write_generation(out, data_dir, whole, spec, options, **common)
    return info, {"extract": extract.to_json(), **counts}


@dataclass
class _GenerationData:
    """Everything one generation (or one shard of it) stores, row = gallery item."""

    method: str
    inner_product: bool
    emb: Any  # VideoEmb
    vectors: np.ndarray  # [N, D] float32 index vectors
    items: list[Item]
    fingerprints: dict[str, Any]  # {"sampling", "items": key → [size, content hash]}
    bank: Any  # QueryBank over these items, or None
    bank_texts: list[str]
    bank_source: str | None

    def select(self, rows: list[int]) -> _GenerationData:
        keys = [self.items[r].key for r in rows]
        return replace(
            self, emb=self.emb.select(rows), vectors=self.vectors[rows], items=[self.items[r] for r in rows],
            fingerprints={**self.fingerprints, "items": {k: self.fingerprints["items"][k] for k in keys}},
            bank=None if self.bank is None else self.bank.select(rows),
        )


def _write_generation(
    out: Path, data_dir: Path, data: _GenerationData, spec: Any, options: BuildOptions, *, model_sha: str,
    failed: list[dict[str, str]], source: str,
) -> layout.IndexInfo:
    """Write the files of one index generation (its model/ is already in `data_dir`); the IndexInfo naming them."""
    import torch

    from tvr.index.gallery import emb_class_name, save_gallery
    from tvr.index.items import write_items

    spec = spec.resolved(len(data.vectors))  # `auto`: the kind for this gallery size, recorded as such
    files = layout.FILE_NAMES
    roles = [layout.MODEL_CONFIG, layout.MODEL_WEIGHTS, layout.VECTORS, layout.GALLERY, layout.ITEMS, layout.FINGERPRINTS]
    names = layout.MILVUS_FILE_NAMES if options.backend == "milvus" else {}
    save_vectors = _vector_saver(out, data_dir, spec, options, names)
    save_vectors(data.vectors, layout.VECTORS)
    save_gallery(data_dir / files[layout.GALLERY], data.emb, torch.from_numpy(data.vectors))
    write_items(data_dir / files[layout.ITEMS], data.items)
    atomic_write_json(data_dir / files[layout.FINGERPRINTS], data.fingerprints)
    bank, bank_doc = data.bank, None
    if bank is not None:
        bank.save(data_dir / files[layout.QUERYBANK])
        atomic_write_json(data_dir / files[layout.QUERYBANK_TEXTS], data.bank_texts)
        roles += [layout.QUERYBANK, layout.QUERYBANK_TEXTS]
        bank_doc = {"n_bank": bank.n_bank, "beta": bank.beta, "dis_k": bank.dis_k, "csls_k": bank.csls_k,
                    "source": data.bank_source}
        if data.inner_product:  # DESIGN §4: IS folded exactly into one more dimension (conditioned for ANN)
            _, folded, factor, offset = bank.conditioned_is_vectors(np.zeros((1, data.vectors.shape[1])), data.vectors)
            save_vectors(folded.astype(np.float32), layout.VECTORS_IS)
            roles.append(layout.VECTORS_IS)
            bank_doc["is_folding"] = {"factor": factor, "offset": offset}  # IS = factor · score − offset
    return layout.IndexInfo(
        method=data.method, model_sha256=model_sha, inner_product=data.inner_product, kind=spec.kind,
        n_items=len(data.items), dim=int(data.vectors.shape[1]), emb_class=emb_class_name(data.emb),
        data_dir=data_dir.name, files=layout.describe_files(out, data_dir, roles, names), querybank=bank_doc,
        failed=failed, source=source, created_s=time.time(), backend=options.backend,
    )


def _write_shards(
    out: Path, data_dir: Path, whole: _GenerationData, spec: Any, options: BuildOptions, *, model_sha: str,
    failed: list[dict[str, str]], source: str,
) -> layout.ShardSetInfo:
    """Split the generation into `options.shards` complete indexes inside `data_dir`, by the hash of
    each item's name (its path inside the source folder, or its manifest key: the same split wherever
    the collection is mounted).

    Statistics that involve the whole gallery (the querybank's DIS activation) were computed before
    the split, so each shard holds its items' part of the whole gallery's statistics."""
    n = options.shards
    members: list[list[int]] = [[] for _ in range(n)]
    for row, item in enumerate(whole.items):
        members[layout.shard_of(item.name, n)].append(row)
    empty = [i for i, m in enumerate(members) if not m]
    if empty:
        raise TvrError(f"--shards {n} leaves shard {empty[0]} empty with {len(whole.items)} videos; use fewer shards")
    shards = []
    for number, rows in enumerate(members):
        shard_root = data_dir / f"{layout.SHARD_PREFIX}{number:03d}"
        shard_data = layout.new_data_dir(shard_root)
        _link_model(data_dir / "model", shard_data / "model")
        info = _write_generation(shard_root, shard_data, whole.select(rows), spec, options, model_sha=model_sha,
                                 failed=[], source=source)
        layout.commit(shard_root, info)
        shards.append({"path": shard_root.relative_to(out).as_posix(), "n_items": info.n_items,
                       "index_sha256": layout.sha256_file(shard_root / layout.INDEX_FILE), "kind": info.kind})
    kinds = sorted({s["kind"] for s in shards})
    return layout.ShardSetInfo(
        method=whole.method, model_sha256=model_sha, kind="+".join(kinds), data_dir=data_dir.name, shards=shards,
        n_items=len(whole.items), failed=failed, source=source, created_s=time.time(),
    )


def _link_model(src: Path, dst: Path) -> None:
    """The checkpoint's files in a shard: hard links to the generation's copy (a copy across devices)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:
            _copy_atomic(f, dst / f.name)


@dataclass
class PreviousGeneration:
    """What an update can take from the index it replaces: stored embeddings by key, and file identities."""

    gallery: Any  # VideoEmb, row = gallery row
    rows: dict[str, int]  # item key → gallery row
    fingerprints: dict[str, list[Any]]  # item key → [size, content hash] when it was encoded


def previous_generation(out: Path, model_sha: str, config_sha: str, sampling: dict[str, Any]) -> PreviousGeneration | None:
    """The committed generation of `out` (plain or sharded), when its embeddings can be reused: the same
    model weights and config, the same frame sampling, and intact files. Anything else (none, another
    model, an index from before fingerprints were stored, a damaged file): None, and every clip is
    encoded again."""
    if not (out / layout.INDEX_FILE).is_file():
        return None
    if not layout.is_sharded(out):
        return _previous_plain(out, model_sha, config_sha, sampling)
    try:
        roots = layout.read_shard_set(out).shard_roots(out)
    except TvrError:
        return None
    parts = [_previous_plain(root, model_sha, config_sha, sampling) for root in roots]
    if any(p is None for p in parts):
        return None
    rows: dict[str, int] = {}
    fingerprints: dict[str, list[Any]] = {}
    for part in parts:
        offset = len(rows)
        rows.update({key: offset + row for key, row in part.rows.items()})
        fingerprints.update(part.fingerprints)
    gallery = type(parts[0].gallery).cat([p.gallery for p in parts])
    return PreviousGeneration(gallery, rows, fingerprints)


def _previous_plain(out: Path, model_sha: str, config_sha: str, sampling: dict[str, Any]) -> PreviousGeneration | None:
    import json

    from tvr.index.gallery import load_gallery
    from tvr.index.items import ItemTable

    try:
        info = layout.read_info(out)
        if info.model_sha256 != model_sha or not info.has(layout.FINGERPRINTS):
            return None
        if info.files[layout.MODEL_CONFIG]["sha256"] != config_sha:
            return None
        needed = (layout.FINGERPRINTS, layout.GALLERY, layout.ITEMS)
        if any(layout.sha256_file(info.path_of(out, r)) != info.files[r]["sha256"] for r in needed):
            return None
        doc = json.loads(info.path_of(out, layout.FINGERPRINTS).read_text(encoding="utf-8"))
        if doc.get("sampling") != sampling:
            return None
        gallery, _ = load_gallery(info.path_of(out, layout.GALLERY), info.emb_class, info.n_items)
        table = ItemTable(info.path_of(out, layout.ITEMS))
        try:
            keys = [item.key for item in table.all()]
        finally:
            table.close()
    except (TvrError, OSError, ValueError):
        return None
    return PreviousGeneration(gallery, {k: r for r, k in enumerate(keys)}, dict(doc.get("items") or {}))


def existing_shards(out: Path) -> int:
    """The shard count of the index at `out` (1 for a plain index, no index, or an unreadable one)."""
    if not layout.is_sharded(out):
        return 1
    try:
        return len(layout.read_shard_set(out).shards)
    except TvrError:
        return 1


def _check_target(out: Path, options: BuildOptions) -> None:
    """OUT must be absent, empty, an index, or (with --force) anything that is a directory."""
    if out.exists() and not out.is_dir():
        raise TvrError(f"{out}: exists and is not a directory")
    if not out.is_dir() or options.force or (out / layout.INDEX_FILE).is_file():
        return
    store = options.store.resolve() if options.store is not None else None
    foreign = [
        p.name for p in out.iterdir()
        if not (p.name.startswith(layout.DATA_PREFIX) or p.name.startswith(".") or (store is not None and p.resolve() == store))
    ]
    if foreign:
        raise TvrError(f"{out}: not empty and not a tvr index (holds {foreign[0]!r}); choose another --out or pass --force")


def _check_same_model(out: Path, model_sha: str, force: bool) -> None:
    """Re-indexing into an existing index must use the same weights unless --force."""
    if force or not (out / layout.INDEX_FILE).is_file():
        return
    try:
        old = layout.read_shard_set(out) if layout.is_sharded(out) else layout.read_info(out)
    except TvrError as exc:
        raise TvrError(f"{out}: holds an unreadable index ({exc}); pass --force to replace it") from None
    if old.model_sha256 != model_sha:
        raise TvrError(
            f"{out}: index was built with another model ({old.method}, weights sha256 {old.model_sha256[:12]}…, "
            f"this checkpoint: {model_sha[:12]}…); pass --force to replace it or choose another --out"
        )


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = temp_path_beside(dst)
    try:
        shutil.copyfile(src, tmp)
        commit_temp(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        return file_identity(path)
    except OSError:  # gone since it was decoded: the server then only serves a regular file at this exact path
        return None


def _vector_saver(out: Path, data_dir: Path, spec: Any, options: BuildOptions, names: dict[str, str]):
    """A function (vectors, role) that builds the role's index in the chosen backend and writes its file."""
    from tvr.index.vector_index import VectorIndex

    def save(vectors: np.ndarray, role: str) -> None:
        path = data_dir / {**layout.FILE_NAMES, **names}[role]
        if options.backend == "milvus":
            from tvr.index.milvus_index import MilvusIndex, collection_name

            collection = collection_name(out, data_dir.name, role)
            MilvusIndex.build(vectors, spec, uri=str(options.uri), collection=collection).save(path)
        else:
            VectorIndex.build(vectors, spec).save(path)

    return save
