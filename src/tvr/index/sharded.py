"""Search over an index split into shards, with an exact top-k merge and exact querybank statistics.

`tvr index --shards N` writes N complete indexes over disjoint items (an item goes to the shard its
key hashes to, `layout.shard_of`). Each shard returns its own top-k and `merge_top_k` keeps the
global top-k, so for exact shards the result equals searching one index over every item.

The querybank statistics are built once over the whole gallery and each shard stores its items'
part of them: IS, CENT and GC's bank ranks are per item, so a shard scores its items exactly on its
own. Three terms depend on a query's whole row and are merged across the shards before ranking
(`tvr.postproc.qbnorm.row_terms` / `merge_row_terms`):

- CSLS's r_G(q): the mean of the query's csls_k highest scores over all items (each shard gives its
  own csls_k highest; the overall ones are among them);
- DIS's choice of IS or β·s per query: whether the query's overall top-1 is in the activation set
  (the activation flags themselves come from the whole gallery, stored per shard);
- the range of the query's scores, which scales GC's tie-break.

A model that is not an inner product re-scores the whole gallery's candidate top-n, merged from the
shards' candidate vectors, as one index would. Equal to the unsharded index up to float rounding
(a shard's matrix product can round differently, ~1e-7) and the order of exact ties: equal scores
are ordered by shard, not by the source's order (two byte-identical videos can swap places, and
DIS can then consult the other twin's activation flag).

Global rows number the items shard after shard: shard i's local row r is row offset_i + r.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvr.errors import TvrError
from tvr.index import layout
from tvr.index.items import Item
from tvr.index.search import Hit, Searcher, _check_k, candidate_count, find_row, top_rescored
from tvr.models.base import TextEmb, VideoEmb


def merge_top_k(
    results: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[int], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (scores [Q, k_s], local ids [Q, k_s]) into the global (scores, ids) top-k."""
    scores = np.concatenate([s for s, _ in results], axis=1)
    ids = np.concatenate(
        [np.where(i >= 0, i + off, -1) for (_, i), off in zip(results, offsets, strict=True)], axis=1
    )
    scores = np.where(ids >= 0, scores, -np.inf)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class ShardedItems:
    """The item tables of every shard behind global rows (the interface of `ItemTable` search uses)."""

    def __init__(self, shards: Sequence[Searcher], offsets: Sequence[int]) -> None:
        self._shards, self._offsets = list(shards), list(offsets)

    def __len__(self) -> int:
        return self._offsets[-1] + len(self._shards[-1])

    def locate(self, row: int) -> tuple[int, int]:
        """(shard number, local row) of a global row."""
        if not 0 <= row < len(self):
            raise TvrError(f"no gallery row {row}; the index holds {len(self)} videos")
        shard = bisect.bisect_right(self._offsets, row) - 1
        return shard, row - self._offsets[shard]

    def by_shard(self, rows: Sequence[int]) -> dict[int, tuple[list[int], np.ndarray]]:
        """shard number → (positions in `rows`, local rows) of the global `rows` it holds (−1 rows skipped)."""
        out: dict[int, tuple[list[int], list[int]]] = {}
        for n, row in enumerate(rows):
            if row >= 0:
                shard, local = self.locate(int(row))
                at, local_rows = out.setdefault(shard, ([], []))
                at.append(n)
                local_rows.append(local)
        return {shard: (at, np.array(local_rows, dtype=np.int64)) for shard, (at, local_rows) in out.items()}

    def get(self, rows: Sequence[int]) -> list[Item]:
        out: list[Item | None] = [None] * len(rows)
        for shard, (at, local) in self.by_shard(rows).items():
            for n, item in zip(at, self._shards[shard].items.get(local.tolist()), strict=True):
                out[n] = item
        return out  # type: ignore[return-value] - every slot was filled

    def find(self, ref: str) -> int | None:
        for shard, offset in zip(self._shards, self._offsets, strict=True):
            row = shard.items.find(ref)
            if row is not None:
                return offset + row
        return None

    def check(self) -> None:
        for shard in self._shards:
            shard.items.check()

    def close(self) -> None:
        for shard in self._shards:
            shard.items.close()


class ShardedSearcher:
    """An opened sharded index, with `Searcher`'s interface over global rows; see the module docstring.

    The shards share one model (each shard's copy is checked to hold the same weights), and are
    searched in parallel threads (FAISS and torch release the GIL).
    """

    def __init__(self, root: Path, info: layout.ShardSetInfo, shards: Sequence[Searcher]) -> None:
        self.root = root
        self.info = info
        self.shards = list(shards)
        self.offsets = np.cumsum([0, *[len(s) for s in self.shards[:-1]]]).tolist()
        self.items = ShardedItems(self.shards, self.offsets)
        first = self.shards[0]
        self.model, self.device, self.bank = first.model, first.device, first.bank
        self._pool = ThreadPoolExecutor(max_workers=min(len(self.shards), 8), thread_name_prefix="tvr-shard")

    @classmethod
    def open(cls, index_dir: str | Path, device: str = "cpu") -> ShardedSearcher:
        root = Path(index_dir)
        info = layout.read_shard_set(root)
        shards: list[Searcher] = []
        try:
            for shard_root in info.shard_roots(root):
                shard_info = layout.read_info(shard_root)
                if shard_info.model_sha256 != info.model_sha256:
                    raise TvrError(f"{shard_root}: built with other weights than the sharded index names; rebuild the index")
                shards.append(Searcher.open(shard_root, device=device, model=shards[0].model if shards else None))
            if len({s.bank is None for s in shards}) != 1:
                raise TvrError(f"{root}: some shards have a querybank and others not; rebuild the index")
        except BaseException:
            for shard in shards:
                shard.close()
            raise
        return cls(root, info, shards)

    # ------------------------------------------------------------------ the interface of Searcher
    def __len__(self) -> int:
        return self.info.n_items

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def postprocs(self) -> list[str]:
        return self.shards[0].postprocs

    def close(self) -> None:
        self.items.close()
        self._pool.shutdown(wait=False)

    @torch.no_grad()
    def search(self, texts: Sequence[str], k: int = 10, postproc: str = "none") -> list[list[Hit]]:
        """The top-k hits of every text over all shards, best first (the unsharded index's ranking)."""
        self.shards[0].check_query(texts, k, postproc)
        k = min(int(k), len(self))
        text_emb = self.shards[0].encode_queries(texts)
        scores, rows = self.rank(text_emb, k, postproc)
        return [self._hits(text_emb.select([q]), scores[q], rows[q]) for q in range(len(texts))]

    def rank(self, text_emb: TextEmb, k: int, postproc: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], global rows [Q, k]); the whole-row terms of CSLS, DIS and GC are merged first."""
        from tvr.postproc.qbnorm import merge_row_terms

        if postproc == "none" and not self.model.inner_product:
            return self._rescored_top_k(text_emb, k)
        terms, score_rows = None, [None] * len(self.shards)
        if self.shards[0].scores_whole_rows(postproc):  # each shard's score rows, computed once for both passes
            score_rows = self._each(lambda s: s.all_scores(text_emb))
        if postproc != "none":
            parts = self._each(lambda s, sc: s.row_terms(text_emb, postproc, sc), score_rows)
            terms = merge_row_terms(postproc, self.bank, parts) or None
        results = self._each(lambda s, sc: s.rank(text_emb, min(k, len(s)), postproc, terms, sc), score_rows)
        return merge_top_k(results, self.offsets, k)

    @torch.no_grad()
    def like(self, video: str | Path, k: int = 10) -> list[Hit]:
        _check_k(k)
        k = min(int(k), len(self))
        query = self.video_embedding(video)
        results = self._each(lambda s: tuple(a[None] for a in s.like_top_k(query, min(k, len(s)))))
        scores, rows = merge_top_k(results, self.offsets, k)
        return self._regroup(scores[0], rows[0], lambda shard, sc, local: shard.like_hits(sc, local))

    @torch.no_grad()
    def describe(self, video: str | Path, captions: Sequence[str], k: int = 10) -> list[tuple[int, str, float]]:
        shard, local = self._owner(video)
        if shard is None:  # a file, encoded by any shard's (the one) model
            return self.shards[0].describe(video, captions, k)
        return shard.describe(f"#{local}", captions, k)

    def bank_captions(self) -> list[str]:
        return self.shards[0].bank_captions()

    def find_item(self, ref: str) -> int | None:
        return find_row(str(ref), len(self), self.items)

    def video_embedding(self, video: str | Path) -> VideoEmb:
        shard, local = self._owner(video)
        return shard.gallery.select([local]) if shard is not None else self.shards[0].video_embedding(video)

    def file_paths(self) -> list[Path]:
        return [self.root / layout.INDEX_FILE] + [p for s in self.shards for p in s.file_paths()]

    def verify(self) -> None:
        layout.read_shard_set(self.root)  # each shard's index.json against its recorded sha256
        for shard in self.shards:
            shard.verify()

    # ------------------------------------------------------------------------------- internals
    def _each(self, fn: Callable[..., Any], *per_shard: Sequence[Any]) -> list[Any]:
        """`fn(shard, *its items of per_shard)` of every shard, in shard order, run in the pool's threads
        (without autograd: grad mode is per thread)."""
        def call(shard: Searcher, *args: Any) -> Any:
            with torch.no_grad():
                return fn(shard, *args)

        return list(self._pool.map(call, self.shards, *per_shard))

    def _rescored_top_k(self, text_emb: TextEmb, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A model that is not an inner product: the whole gallery's candidate top-n (merged from the
        shards' candidate vectors, as one index would pick them), re-scored by the shards that hold them."""
        n = candidate_count(len(self), k)
        _, cands = merge_top_k(self._each(lambda s: s.candidates(text_emb, min(n, len(s)))), self.offsets, n)
        scores = []
        for i, rows in enumerate(cands):
            out = np.full(len(rows), -np.inf)
            for shard, (at, local) in self.items.by_shard(rows.tolist()).items():
                out[at] = self.shards[shard].rescore(text_emb, i, local)
            scores.append(out)
        return top_rescored(scores, cands, k)

    def _owner(self, video: str | Path) -> tuple[Searcher | None, int]:
        row = self.find_item(str(video))
        if row is None:
            return None, -1
        shard, local = self.items.locate(row)
        return self.shards[shard], local

    def _hits(self, query: TextEmb, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        return self._regroup(scores, rows, lambda shard, sc, local: shard._hits(query, sc, local))

    def _regroup(
        self, scores: np.ndarray, rows: np.ndarray, make: Callable[[Searcher, np.ndarray, np.ndarray], list[Hit]]
    ) -> list[Hit]:
        """Hits of global `rows` built by their shards (`make` on local rows), back in rank order."""
        keep = rows >= 0
        scores, rows = scores[keep], rows[keep].astype(np.int64)
        hits: list[Hit | None] = [None] * len(rows)
        for shard, (at, local) in self.items.by_shard(rows.tolist()).items():
            for n, hit in zip(at, make(self.shards[shard], scores[at], local), strict=True):
                hits[n] = dataclasses.replace(hit, rank=n + 1, row=int(rows[n]))
        return hits  # type: ignore[return-value] - every slot was filled


def open_index(index_dir: str | Path, device: str = "cpu") -> Searcher | ShardedSearcher:
    """Open a plain or a sharded index; both answer search, like and describe the same way."""
    if layout.is_sharded(Path(index_dir)):
        return ShardedSearcher.open(index_dir, device=device)
    return Searcher.open(index_dir, device=device)
