"""Search an index by text (ranked videos with scores and the best-matching moment), by example
("more like this" video), or describe a video with the captions of a caption bank (video→text).

`Searcher.open(index_dir)` verifies every file against index.json and loads the model copy, the
FAISS index(es), the item table and the querybank once (the stored VideoEmb is memory-mapped and
read per hit: opening costs nothing per video); `search` can then be
called many times (the HTTP server holds one Searcher).

Scores: "none" ranks by the model's cosine-scale similarity. Inner-product models are searched in
FAISS directly; other models get FAISS candidates re-scored by `model.similarity`. Querybank
post-processors (IS/DIS/CSLS/GC/CENT) score the whole gallery row (O(N) per query) and normalise it
with the stored statistics; IS (and DIS's normalised rows) of inner-product models use the folded
index instead (DESIGN §4), so an ANN index returns the IS top-k directly.

By example (`like`): the query is an indexed video (its stored embedding) or any video file (decoded
and encoded on the fly with the index's own sampling); inner-product models rank the gallery by the
inner product of their index vectors (FAISS), other models by the cosine of pooled embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvr.errors import TvrError
from tvr.index import layout
from tvr.index.items import Item, ItemTable
from tvr.index.moments import Moment, best_moments
from tvr.models.base import RetrievalModel, TextEmb, VideoEmb

SEARCH_POSTPROCS = ("none", "is", "dis", "csls", "gc", "cent")
MAX_CAPTIONS = 100_000  # a caption bank for `describe` is encoded whole
MIN_CANDIDATES = 100  # non-inner-product models: FAISS candidates re-scored per query (at least)
CANDIDATES_PER_HIT = 10  # … and this many per hit asked for
MAX_QUERY_CHARS = 1000


@dataclass(frozen=True)
class Hit:
    """One ranked result of one query."""

    rank: int  # 1-based
    row: int  # gallery row
    item: Item
    score: float  # ranking score (post-processed when a post-processor is used)
    similarity: float  # the model's raw cosine-scale similarity
    moment: Moment | None

    def to_json(self) -> dict[str, Any]:
        i = self.item
        return {
            "rank": self.rank, "video": i.name, "path": i.path, "key": i.key, "start_s": i.start_s,
            "end_s": i.end_s, "duration_s": i.duration_s, "score": self.score, "similarity": self.similarity,
            "moment": None if self.moment is None else self.moment.to_json(),
        }


class Searcher:
    """An opened index; see the module docstring."""

    def __init__(
        self, root: Path, info: layout.IndexInfo, model: RetrievalModel, gallery: Any, vectors: Any,
        items: ItemTable, bank: Any, folded: Any, device: torch.device,
    ) -> None:
        self.root = root
        self.info = info
        self.model = model
        self.gallery = gallery
        self.vectors = vectors  # VectorIndex over gallery (or candidate) vectors
        self.items = items
        self.bank = bank  # QueryBank or None
        self.folded = folded  # VectorIndex of IS-folded vectors, or None
        self.device = device
        self._bank_captions: list[str] | None = None  # read on first use

    @classmethod
    def open(cls, index_dir: str | Path, device: str = "cpu", model: RetrievalModel | None = None) -> Searcher:
        """Open a (plain) index. `model`: its model, already loaded (the shards of one sharded index
        share one), instead of loading the index's copy; its weights must be the ones index.json names."""
        from tvr.devices import resolve_device
        from tvr.index.gallery import LazyGallery
        from tvr.index.vector_index import IndexSpec, VectorIndex
        from tvr.models.registry import load_model
        from tvr.postproc.querybank import QueryBank

        root = Path(index_dir)
        info = layout.read_info(root)
        layout.verify_files(root, info)
        if info.files[layout.MODEL_WEIGHTS]["sha256"] != info.model_sha256:
            raise TvrError(f"{root / layout.INDEX_FILE}: the stored model is not the one the index was built with "
                           f"(weights sha256 differs from 'model_sha256'); rebuild the index")
        dev = resolve_device(device)
        if model is None:
            model = load_model(info.path_of(root, layout.MODEL_WEIGHTS).parent, method=info.method, device=dev)
        if bool(model.inner_product) != info.inner_product:
            raise TvrError(f"{root}: index built for inner_product={info.inner_product}, model {info.method!r} says otherwise")
        gallery = LazyGallery(info.path_of(root, layout.GALLERY), info.emb_class, info.n_items, dev)  # rows read on demand
        spec = IndexSpec(kind=info.kind)
        if info.backend == "milvus":
            from tvr.index.milvus_index import MilvusIndex as VectorIndex  # noqa: N814 - the same interface
        vectors = VectorIndex.load(info.path_of(root, layout.VECTORS), spec, info.files[layout.VECTORS]["sha256"])
        if len(vectors) != info.n_items or vectors.dim != info.dim:
            raise TvrError(f"{info.path_of(root, layout.VECTORS)}: holds {len(vectors)}×{vectors.dim} vectors, "
                           f"index.json says {info.n_items}×{info.dim}")
        items = ItemTable(info.path_of(root, layout.ITEMS))
        if len(items) != info.n_items:
            raise TvrError(f"{items.path}: {len(items)} items, index.json says {info.n_items}")
        bank = folded = None
        if info.has(layout.QUERYBANK):
            bank = QueryBank.load(info.path_of(root, layout.QUERYBANK), n_gallery=info.n_items)
        if info.has(layout.VECTORS_IS):
            folded = VectorIndex.load(info.path_of(root, layout.VECTORS_IS), spec, info.files[layout.VECTORS_IS]["sha256"])
        return cls(root, info, model, gallery, vectors, items, bank, folded, dev)

    def __len__(self) -> int:
        return self.info.n_items

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def postprocs(self) -> list[str]:
        """Post-processors this index supports."""
        return list(SEARCH_POSTPROCS) if self.bank is not None else ["none"]

    def close(self) -> None:
        self.items.close()

    @torch.no_grad()
    def search(self, texts: Sequence[str], k: int = 10, postproc: str = "none") -> list[list[Hit]]:
        """The top-k hits of every text, best first."""
        self.check_query(texts, k, postproc)
        k = min(int(k), len(self))
        text_emb = self.encode_queries(texts)
        scores, rows = self.rank(text_emb, k, postproc)
        return [self._hits(text_emb.select([q]), scores[q], rows[q]) for q in range(len(texts))]

    def encode_queries(self, texts: Sequence[str]) -> TextEmb:
        from tvr.models.encode import encode_texts

        return encode_texts(self.model, list(texts), self.device)

    def rank(
        self, text_emb: TextEmb, k: int, postproc: str, terms: dict[str, np.ndarray] | None = None,
        scores: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], gallery rows [Q, k]) of the queries' top-k under `postproc` (rows −1 past the end).

        `terms`: the per-query terms of a larger gallery this index is a shard of (merged from every
        shard's `row_terms`); None: computed from this gallery. `scores`: this gallery's raw score
        rows (`all_scores`) when the caller already has them.
        """
        if postproc == "none":
            return self._raw_top_k(text_emb, k)
        if not self.scores_whole_rows(postproc):
            return self._folded_top_k(text_emb, k, postproc, terms)
        final = self.bank.normalize(postproc, self.all_scores(text_emb) if scores is None else scores, terms)
        rows = np.argsort(-final, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(final, rows, 1), rows

    def scores_whole_rows(self, postproc: str) -> bool:
        """Whether `rank` scores every gallery item for `postproc` (else: vector index searches alone)."""
        return postproc != "none" and not (postproc in ("is", "dis") and self.folded is not None)

    def row_terms(self, text_emb: TextEmb, postproc: str, scores: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """This gallery's part of the per-query terms of `postproc` that depend on the whole row
        (`tvr.postproc.qbnorm.row_terms`); DIS's top-1 comes from the vector index, as `rank` finds it.
        `scores`: as for `rank`."""
        from tvr.postproc.qbnorm import row_terms

        if postproc not in ("csls", "dis", "gc"):
            return {}
        if not self.scores_whole_rows(postproc):  # DIS over the folded index
            top, rows = self.vectors.search(self._query_vectors(text_emb), 1)
            return {"best": top[:, 0].astype(np.float64), "best_active": self.bank.active[rows[:, 0]]}
        return row_terms(postproc, self.bank, self.all_scores(text_emb) if scores is None else scores)

    def all_scores(self, text_emb: TextEmb) -> np.ndarray:
        """[Q, N] the raw scores of every query against every gallery item."""
        from tvr.models.encode import score_matrix

        if self.model.inner_product:  # by contract the same scores, from the index vectors alone
            q = self.model.query_vectors(text_emb).float()
            return (q @ self.gallery.field("vectors").float().t()).double().cpu().numpy()
        return score_matrix(self.model, text_emb, self.gallery.full()).astype(np.float64)

    @torch.no_grad()
    def like(self, video: str | Path, k: int = 10) -> list[Hit]:
        """The top-k gallery items most similar to `video`: an indexed item (see `find_item`) or a file."""
        _check_k(k)
        k = min(int(k), len(self))
        scores, rows = self.like_top_k(self.video_embedding(video), k)
        return self.like_hits(scores, rows)

    def like_top_k(self, query: VideoEmb, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [k], rows [k]) of the gallery items nearest to one video embedding (rows −1 past the end)."""
        if self.model.inner_product:
            q = self.model.gallery_vectors(query).float().cpu().numpy()
            scores, rows = self.vectors.search(q, k)
            return scores[0].astype(np.float64), rows[0]
        sims = (_unit(self.gallery.field("pooled")) @ _unit(query.pooled).t())[:, 0].double().cpu().numpy()
        rows = np.argsort(-sims, kind="stable")[:k]
        return sims[rows], rows

    def like_hits(self, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        keep = rows >= 0
        rows, scores = rows[keep].astype(np.int64), scores[keep]
        items = self.items.get(rows.tolist())
        return [Hit(rank=r + 1, row=int(rows[r]), item=items[r], score=float(scores[r]), similarity=float(scores[r]),
                    moment=None) for r in range(len(rows))]

    @torch.no_grad()
    def describe(self, video: str | Path, captions: Sequence[str], k: int = 10) -> list[tuple[int, str, float]]:
        """Video→text: the k captions of `captions` that the model scores highest for `video`, as
        (1-based rank, caption, cosine-scale similarity)."""
        _check_k(k)
        captions = [c for c in captions if isinstance(c, str) and c.strip()]
        if not captions:
            raise TvrError("describe needs at least one caption")
        if len(captions) > MAX_CAPTIONS:
            raise TvrError(f"describe takes at most {MAX_CAPTIONS} captions, got {len(captions)}")
        query = self.video_embedding(video)
        sims = self.model.similarity(self.encode_queries(captions), query)[:, 0].double().cpu().numpy()
        order = np.argsort(-sims, kind="stable")[: int(k)]
        return [(r + 1, captions[i], float(sims[i])) for r, i in enumerate(order)]

    def file_paths(self) -> list[Path]:
        """Every file index.json names (the server watches them for replacement)."""
        return [self.info.path_of(self.root, role) for role in self.info.files]

    def verify(self) -> None:
        """Re-check every file's sha256 and the item table's integrity (TvrError on the first problem)."""
        layout.verify_files(self.root, self.info)
        self.items.check()

    def bank_captions(self) -> list[str]:
        """The querybank's captions stored with the index ([] for an index without them)."""
        import json

        if not self.info.has(layout.QUERYBANK_TEXTS):
            return []
        if self._bank_captions is None:
            self._bank_captions = json.loads(self.info.path_of(self.root, layout.QUERYBANK_TEXTS).read_text(encoding="utf-8"))
        return list(self._bank_captions)

    def find_item(self, ref: str) -> int | None:
        """The gallery row of an indexed item named by `ref`: "#ROW", its name as search lists it, its
        store key, or its file's path; None when nothing indexed matches."""
        return find_row(str(ref), len(self), self.items)

    def video_embedding(self, video: str | Path) -> VideoEmb:
        """The stored embedding of an indexed item, else the embedding of a video file, encoded now."""
        row = self.find_item(str(video))
        if row is not None:
            return self.gallery.select([row])
        path = Path(video)
        if not path.is_file():
            raise TvrError(f"{video}: neither an indexed video (a name or key search lists, or #ROW) nor a video file")
        return self._encode_file(path)

    # ---------------------------------------------------------------------------------- internals
    def _encode_file(self, path: Path) -> VideoEmb:
        from tvr.data.clips import padded_frames, video_batch
        from tvr.data.streams import pixels_encoder
        from tvr.io.video import DecodeError, decode

        spec = self.model.input_spec()
        if spec.streams or not spec.pixels:
            raise TvrError(f"{path}: a {self.info.method} model also reads {', '.join(spec.streams) or 'feature streams'}; "
                           "index the video first, then name it")
        encoder = pixels_encoder(spec)
        try:
            (arrays,) = encoder.encode([decode(path, encoder.decode_spec())])
        except DecodeError as exc:
            raise TvrError(f"{path}: cannot decode ({exc})") from None
        frames, mask, times = padded_frames([arrays], spec)
        if not mask.any():
            raise TvrError(f"{path}: no frame could be decoded")
        batch = video_batch(frames, mask, times, spec, [str(path)])
        self.model.eval()
        return self.model.encode_video(batch.to(self.device)).detach()

    def check_query(self, texts: Sequence[str], k: int, postproc: str) -> None:
        """A TvrError for queries, k or a post-processor this index cannot answer."""
        if isinstance(texts, str) or not texts:
            raise TvrError("search needs a non-empty list of query texts")
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise TvrError("a search query must be a non-empty text")
            if len(t) > MAX_QUERY_CHARS:
                raise TvrError(f"a search query is limited to {MAX_QUERY_CHARS} characters, got {len(t)}")
        _check_k(k)
        if postproc not in SEARCH_POSTPROCS:
            from tvr.postproc import get_postproc

            entry = get_postproc(postproc)  # unknown names: UnknownName listing every post-processor
            why = "transductive (it needs every query at once)" if entry.transductive else "not available in search"
            raise TvrError(f"post-processor {postproc!r} is {why}; search supports {', '.join(SEARCH_POSTPROCS)}")
        if postproc != "none" and self.bank is None:
            raise TvrError(
                f"{self.root}: index has no querybank, so --postproc {postproc} is unavailable; "
                "rebuild it with 'tvr index ... --querybank MANIFEST'"
            )

    def _query_vectors(self, text_emb: TextEmb) -> np.ndarray:
        if self.model.inner_product:
            q = self.model.query_vectors(text_emb)
        else:
            make = getattr(self.model, "candidate_query_vectors", None)
            q = make(text_emb) if make is not None else text_emb.pooled
        return q.float().cpu().numpy()

    def _raw_top_k(self, text_emb: TextEmb, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.model.inner_product:
            scores, rows = self.vectors.search(self._query_vectors(text_emb), k)
            return scores.astype(np.float64), rows
        _, cands = self.candidates(text_emb, candidate_count(len(self), k))
        return top_rescored([self.rescore(text_emb, i, cands[i]) for i in range(len(cands))], cands, k)

    def candidates(self, text_emb: TextEmb, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(candidate scores, rows) [Q, n] of a model that is not an inner product: its candidate
        vectors' top-n, which `rescore` then scores with the model itself (rows −1 past the end)."""
        return self.vectors.search(self._query_vectors(text_emb), n)

    def rescore(self, text_emb: TextEmb, query: int, rows: np.ndarray) -> np.ndarray:
        """The model's similarity of query `query` to gallery `rows` (−inf where a row is −1)."""
        out = np.full(len(rows), -np.inf)
        ok = rows >= 0
        if ok.any():
            out[ok] = self.model.similarity(text_emb.select([query]), self.gallery.select(rows[ok].tolist()))[0].double().cpu().numpy()
        return out

    def _folded_top_k(
        self, text_emb: TextEmb, k: int, postproc: str, terms: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """IS from the folded index; DIS: folded rows where the raw top-1 is active, β·raw elsewhere."""
        q = self._query_vectors(text_emb)
        folded_q = np.concatenate([q, np.ones((len(q), 1), dtype=np.float32)], axis=1)
        is_scores, is_rows = self.folded.search(folded_q, k)
        folding = (self.info.querybank or {}).get("is_folding")
        if folding:  # conditioned folding (indexes since it exists): back to IS's own scale
            is_scores = float(folding["factor"]) * is_scores.astype(np.float64) - float(folding["offset"])
        if postproc == "is":
            return is_scores.astype(np.float64), is_rows
        raw_scores, raw_rows = self.vectors.search(q, k)
        use_is = np.asarray(terms["use_is"] if terms else self.bank.active[raw_rows[:, 0]], dtype=bool)
        scores = np.where(use_is[:, None], is_scores, self.bank.beta * raw_scores.astype(np.float64))
        rows = np.where(use_is[:, None], is_rows, raw_rows)
        return scores.astype(np.float64), rows

    def _hits(self, query: TextEmb, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        keep = rows >= 0
        rows, scores = rows[keep].astype(np.int64), scores[keep]
        if len(rows) == 0:
            return []
        videos = self.gallery.select(rows.tolist())
        sims = self.model.similarity(query, videos)[0].double().cpu().tolist()
        moments = best_moments(self.model, query, videos)
        items = self.items.get(rows.tolist())
        return [
            Hit(rank=r + 1, row=int(rows[r]), item=items[r], score=float(scores[r]), similarity=sims[r], moment=moments[r])
            for r in range(len(rows))
        ]


def candidate_count(n_gallery: int, k: int) -> int:
    """How many candidates a model that is not an inner product re-scores for a top-k."""
    return min(n_gallery, max(MIN_CANDIDATES, CANDIDATES_PER_HIT * k))


def top_rescored(scores: list[np.ndarray], rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], rows [Q, k]): each query's k best re-scored candidates (−inf / −1 past the end)."""
    out_s = np.full((len(rows), k), -np.inf)
    out_r = np.full((len(rows), k), -1, dtype=np.int64)  # an ANN may return fewer than k candidates
    for i, (s, r) in enumerate(zip(scores, rows, strict=True)):
        keep = r >= 0
        s, r = s[keep], r[keep]
        order = np.argsort(-s, kind="stable")[:k]
        out_s[i, : len(order)] = s[order]
        out_r[i, : len(order)] = r[order]
    return out_s, out_r


def find_row(ref: str, n_items: int, items: Any) -> int | None:
    """The row that `ref` names: "#ROW" (None when out of range), else whatever `items.find` finds."""
    if ref.startswith("#") and ref[1:].isdigit():
        row = int(ref[1:])
        return row if 0 <= row < n_items else None
    return items.find(ref)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise TvrError(f"k must be a positive integer, got {k!r}")
