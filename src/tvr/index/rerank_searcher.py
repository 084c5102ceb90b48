"""Two-stage search: an index's first-stage hits, the top-K rescored by a CrossTVR re-ranker.

The re-ranker reads the frozen first-stage frame tokens of the candidates only. They are computed on
first use from the first stage's frame store (decoding a clip only if the store lacks it), reduced
to the re-ranker's M tokens per frame, and cached in RERANK_RUN/gallery-tokens/ keyed by the index
generation and both models' weights, so a query costs K re-ranker pair scores whatever the gallery
size (plus the first-stage search).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvr.errors import TvrError
from tvr.index.search import Hit, Searcher
from tvr.models.base import VideoEmb
from tvr.postproc.two_stage import BELOW_GAP, DEFAULT_K, top_k_candidates

CACHE_DIR = "gallery-tokens"


class GalleryTokens:
    """Selected frame tokens [T, M, D] + frame mask per gallery row, computed lazily, cached on disk."""

    def __init__(self, searcher: Searcher, reranker: Any, first_stage_dir: Path, cache_file: Path) -> None:
        self.searcher, self.reranker = searcher, reranker
        self.store = Path(first_stage_dir) / "frames"
        self.cache_file = cache_file
        self.rows: dict[int, int] = {}
        self.tokens: torch.Tensor | None = None  # [n_cached, T, M, D]
        self.mask: torch.Tensor | None = None  # [n_cached, T]
        self.computed = 0  # rows computed by this process (tests count them)
        if cache_file.is_file():
            from safetensors.torch import load_file

            data = load_file(str(cache_file))
            self.rows = {int(r): i for i, r in enumerate(data["rows"].tolist())}
            self.tokens, self.mask = data["tokens"], data["mask"].bool()

    def get(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [len(rows), T, M, D], frame mask [len(rows), T]) of gallery `rows`."""
        missing = sorted({int(r) for r in rows} - set(self.rows))
        if missing:
            self._add(missing)
        assert self.tokens is not None and self.mask is not None
        idx = torch.as_tensor([self.rows[int(r)] for r in rows], dtype=torch.long)
        return self.tokens[idx], self.mask[idx]

    @torch.no_grad()
    def _add(self, rows: list[int]) -> None:
        from tvr.data.clips import Clips
        from tvr.data.streams import pixels_encoder
        from tvr.features.extract import ClipJob, extract_features
        from tvr.models.crosstvr import frozen_frame_tokens, video_emb_from_tokens

        model, device = self.searcher.model, self.searcher.device
        spec = model.input_spec()
        items = self.searcher.items.get(rows)
        jobs = [ClipJob(i.key, Path(i.path), i.start_s, i.end_s) for i in items]
        extract_features(jobs, pixels_encoder(spec), self.store, workers=1, progress=False)
        clips = Clips(self.store, [j.key for j in jobs], spec)
        try:
            batch = clips.batch(range(len(jobs))).to(device)
        except Exception as exc:  # a key the store could not decode
            raise TvrError(f"{self.store}: cannot read frames of candidate videos ({exc})") from None
        finally:
            clips.close()
        emb = video_emb_from_tokens(self.reranker, frozen_frame_tokens(model, batch), batch.frame_mask)
        new_t, new_m = emb.tokens.float().cpu(), emb.frame_mask.cpu()
        start = 0 if self.tokens is None else len(self.tokens)
        self.tokens = new_t if self.tokens is None else torch.cat([self.tokens, new_t])
        self.mask = new_m if self.mask is None else torch.cat([self.mask, new_m])
        self.rows.update({r: start + i for i, r in enumerate(rows)})
        self.computed += len(rows)
        self._save()

    def _save(self) -> None:
        from safetensors.torch import save_file

        from tvr.atomic import commit_temp, temp_path_beside

        assert self.tokens is not None and self.mask is not None
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        order = sorted(self.rows, key=self.rows.get)
        tmp = temp_path_beside(self.cache_file)
        try:
            save_file({"rows": torch.as_tensor(order, dtype=torch.long), "tokens": self.tokens.contiguous(),
                       "mask": self.mask.contiguous()}, str(tmp))
            commit_temp(tmp, self.cache_file)
        finally:
            tmp.unlink(missing_ok=True)


class RerankSearcher:
    """`Searcher.search` followed by re-ranking of each query's top-K hits."""

    def __init__(self, searcher: Searcher, reranker: Any, k: int, gallery_tokens: GalleryTokens) -> None:
        self.searcher, self.reranker, self.k, self.gallery_tokens = searcher, reranker, k, gallery_tokens
        self.pairs_scored = 0  # re-ranker pair forwards so far (cost accounting)

    @classmethod
    def open(cls, searcher: Searcher, rerank_dir: Path, k: int = DEFAULT_K) -> RerankSearcher:
        from tvr.index.layout import sha256_file
        from tvr.models.registry import WEIGHTS_FILE, load_reranker

        if k < 1:
            raise TvrError(f"--rerank-k must be at least 1, got {k}")
        reranker, first_stage_dir, trained_on = load_reranker(rerank_dir, device=searcher.device)
        if searcher.info.model_sha256 != trained_on:
            raise TvrError(f"--rerank {rerank_dir} was trained on first stage {first_stage_dir}, but {searcher.root} "
                           f"was built with other weights ({searcher.info.method}); index with that checkpoint")
        rr_sha = sha256_file(Path(rerank_dir) / WEIGHTS_FILE)[:16]
        cache = Path(rerank_dir) / CACHE_DIR / f"{searcher.info.data_dir}-{trained_on[:16]}-{rr_sha}.safetensors"
        return cls(searcher, reranker, k, GalleryTokens(searcher, reranker, first_stage_dir, cache))

    @torch.no_grad()
    def search(self, texts: Sequence[str], k: int = 10, postproc: str = "none") -> list[list[Hit]]:
        """Top-k hits per text: the first stage's top-max(k, K) (post-processed), its top-K re-ranked
        by first-stage score + re-ranker score, the rest after them in first-stage order."""
        from tvr.models.crosstvr import frozen_text_tokens, text_emb_from_tokens

        depth = max(int(k), self.k)
        first_hits = self.searcher.search(texts, k=depth, postproc=postproc)
        tokens, mask = frozen_text_tokens(self.searcher.model, list(texts))
        text_emb = text_emb_from_tokens(self.reranker, tokens, mask)
        out = []
        for q, hits in enumerate(first_hits):
            head, tail = hits[: self.k], hits[self.k :]
            if head:
                v_tok, v_mask = self.gallery_tokens.get([h.row for h in head])
                videos = VideoEmb(v_mask.float().mean(1, keepdim=True), frame_mask=v_mask, tokens=v_tok)
                second = self.reranker.score_pairs(text_emb.select([q] * len(head)), videos).double().cpu().numpy()
                self.pairs_scored += len(head)
                weight = getattr(self.reranker, "merge_weight", 1.0)  # the calibrated slope when residual
                first = np.array([h.score for h in head]) * weight
                final = first + second
                order = top_k_candidates(final[None, :], len(head))[0]
                head = [replace(head[i], score=float(final[i])) for i in order]
                if tail:  # shown scores stay monotonic: the rest sits below the lowest candidate
                    shift = max(h.score for h in tail) * weight - float(final.min()) + BELOW_GAP
                    tail = [replace(h, score=h.score * weight - shift) for h in tail]
            ranked = (head + tail)[: int(k)]
            out.append([replace(h, rank=r + 1) for r, h in enumerate(ranked)])
        return out
