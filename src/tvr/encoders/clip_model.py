"""The CLIP architecture (ViT image tower + causal text tower) with OpenAI/open_clip parameter names.

Parameter names follow the OpenAI / open_clip layout (`visual.conv1.weight`,
`visual.transformer.resblocks.0.attn.in_proj_weight`, `token_embedding.weight`, `ln_final.weight`,
`text_projection`, `logit_scale`, …) so an open_clip / OpenAI state dict loads straight in.
open_clip itself cannot be imported here, so this is our own implementation of that layout.

Unlike the reference CLIP, the image tower also returns the patch tokens projected with the same
`ln_post` + `proj` as the CLS token, so they live in the joint space (TS2-Net, ProST, CrossTVR need
them), and each block carries an optional hook on its attention input (TS2-Net token shift).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AttnInputHook = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class VisionConfig:
    """ViT image tower; defaults are OpenAI ViT-B/32."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    output_dim: int = 512
    mlp_ratio: float = 4.0
    quick_gelu: bool = True  # OpenAI weights were trained with QuickGELU; open_clip configs say which

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")


@dataclass(frozen=True)
class TextConfig:
    """Causal text transformer; defaults are OpenAI ViT-B/32's text tower."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    output_dim: int = 512
    mlp_ratio: float = 4.0
    quick_gelu: bool = True

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")


class QuickGELU(nn.Module):
    """x·σ(1.702x), the activation the OpenAI CLIP weights were trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names (batch-first)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        n, length, width = x.shape  # [N, L, D]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [N, H, L, Dh]
        return self.out_proj(out.transpose(1, 2).reshape(n, length, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, quick_gelu: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(hook(x))), then x + mlp(ln_2(x)).

    `attn_input_hook` (None by default) rewrites the tokens fed to attention only; the residual
    keeps the original tokens (TS2-Net's token shift works this way).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio), quick_gelu)
        self.attn_input_hook: AttnInputHook | None = None

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        attn_in = x if self.attn_input_hook is None else self.attn_input_hook(x)
        x = x + self.attn(self.ln_1(attn_in), attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)
        )
        # CLIP's init: residual-branch outputs scaled down with depth so deep stacks start stable
        proj_std = width**-0.5 * (2 * max(layers, 1)) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    """ViT image tower: images [N,3,H,W] (normalised) → CLS and patch tokens in the joint space."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        grid = config.image_size // config.patch_size
        self.patch_grid = (grid, grid)
        self.num_patches = grid * grid
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.num_patches + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, config.layers, config.heads, config.mlp_ratio, config.quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, config.output_dim))

    def resize(self, image_size: int) -> None:
        """Take `image_size`-px images from now on. The patch grid's positional embeddings are resampled
        bicubically (corners not aligned; the CLS position is kept), as CLIP is fine-tuned at a resolution
        other than the one it was trained at; the same table as transformers' `interpolate_pos_encoding`.
        The patch embedding itself does not depend on the size."""
        config = VisionConfig(**{**self.config.__dict__, "image_size": image_size})  # checks the patch multiple
        grid = image_size // config.patch_size
        if (grid, grid) == self.patch_grid:
            return
        old = self.positional_embedding.detach()
        h, w = self.patch_grid
        patches = old[1:].T.reshape(1, -1, h, w).float()  # [1, width, h, w]
        resampled = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)  # as transformers
        table = torch.cat([old[:1], resampled.reshape(-1, grid * grid).T.to(old.dtype)])
        self.positional_embedding = nn.Parameter(table, requires_grad=self.positional_embedding.requires_grad)
        self.config, self.patch_grid, self.num_patches = config, (grid, grid), grid * grid

    @property
    def blocks(self) -> nn.ModuleList:
        """The residual blocks; set `blocks[i].attn_input_hook` to modify a block's attention input."""
        return self.transformer.resblocks

    def embed(self, images: Tensor) -> Tensor:
        """Patchify + CLS + positions + ln_pre: [N,3,H,W] → [N, 1+L, width]."""
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"images must be {size}×{size}, got {tuple(images.shape[-2:])}")
        x = self.conv1(images).flatten(2).transpose(1, 2)  # [N, L, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def forward_tokens(self, images: Tensor) -> Tensor:
        """Hidden states after the last block, before ln_post: [N, 1+L, width] (index 0 = CLS)."""
        return self.transformer(self.embed(images))

    def project(self, tokens: Tensor) -> Tensor:
        """ln_post + proj on any tokens: [..., width] → [..., output_dim]."""
        return self.ln_post(tokens) @ self.proj

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (cls [N, output_dim], patches [N, L, output_dim]), both projected, not normalised."""
        out = self.project(self.forward_tokens(images))
        return out[:, 0], out[:, 1:]


class TextTransformer(nn.Module):
    """Causal text tower: token ids [B,W] → (token states, EOT embedding, mask), all projected.

    The EOT position is the last True of `mask` when given, else the highest id in each row (the CLIP
    convention: EOT has the largest id of the vocabulary); positions after EOT are masked out.
    """

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.transformer = Transformer(config.width, config.layers, config.heads, config.mlp_ratio, config.quick_gelu)
        self.ln_final = nn.LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.empty(config.width, config.output_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=config.width**-0.5)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    def forward(self, token_ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """token_ids [B,W] long (W ≤ context_length); mask [B,W] bool (True = real token) or None."""
        batch, length = token_ids.shape
        if length > self.config.context_length:
            raise ValueError(f"{length} tokens exceed the context length {self.config.context_length}")
        if mask is None:
            eot_index = token_ids.argmax(dim=-1)
        else:
            eot_index = (mask.long().cumsum(dim=-1).argmax(dim=-1)).clamp(min=0)  # last True
        positions = torch.arange(length, device=token_ids.device)
        valid = positions[None, :] <= eot_index[:, None]  # [B, W]
        if mask is not None:
            valid = valid & mask.bool()
        x = self.token_embedding(token_ids) + self.positional_embedding[:length].to(self.token_embedding.weight.dtype)
        causal = torch.ones(length, length, dtype=torch.bool, device=token_ids.device).tril()
        x = self.ln_final(self.transformer(x, causal))
        states = x @ self.text_projection  # [B, W, output_dim]
        eot = states[torch.arange(batch, device=token_ids.device), eot_index]
        return states, eot, valid


class ClipModel(nn.Module):
    """Image tower `.visual`, text tower `.text`, and the learned `.logit_scale` (log of 1/τ).

    `state_dict()` / `load_state_dict()` use the open_clip layout: text parameters sit at the top
    level (`token_embedding.weight`, `transformer.resblocks.*`, …), not under `text.`.
    """

    TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")

    def __init__(self, vision: VisionConfig, text: TextConfig, logit_scale_init: float = math.log(1 / 0.07)) -> None:
        super().__init__()
        self.vision_config = vision
        self.text_config = text
        self.visual = VisionTransformer(vision)
        self.text = TextTransformer(text)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.register_state_dict_post_hook(_flatten_text_keys)
        self.register_load_state_dict_pre_hook(_nest_text_keys)

    def resize_images(self, image_size: int) -> None:
        """Take `image_size`-px images (positional embeddings resampled, see `VisionTransformer.resize`)."""
        self.visual.resize(image_size)
        self.vision_config = self.visual.config

    def encode_image(self, images: Tensor) -> Tensor:
        """[N,3,H,W] → CLS embeddings [N, output_dim] (not normalised)."""
        return self.visual(images)[0]

    def encode_text(self, token_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """[B,W] → EOT embeddings [B, output_dim] (not normalised)."""
        return self.text(token_ids, mask)[1]


def _flatten_text_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: object) -> None:
    """state_dict hook: `text.X` → `X`, the open_clip layout."""
    inner = prefix + "text."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def _nest_text_keys(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """load_state_dict pre-hook: the open_clip top-level text keys → `text.X`."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if any(rest.startswith(t) for t in ClipModel.TEXT_KEYS):
            state_dict[prefix + "text." + rest] = state_dict.pop(key)
