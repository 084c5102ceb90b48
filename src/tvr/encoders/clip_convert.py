"""Configs and weights of other CLIP formats → our `ClipModel` (open_clip layout).

- open_clip model configs (`{"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}`) and a few
  built-in architecture names;
- a bare OpenAI/open_clip state dict: the config is inferred from tensor shapes, the way open_clip
  builds a model from an OpenAI checkpoint (heads = width / 64, QuickGELU);
- a Hugging Face `CLIPModel` state dict + config: q/k/v projections are concatenated into
  `in_proj_weight`, projections transposed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from tvr.encoders.clip_model import TextConfig, VisionConfig
from tvr.errors import TvrError

# Architecture hyper-parameters of common open_clip model names (public facts from their configs).
_VIT_B = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}
_VIT_L = {"context_length": 77, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}
OPEN_CLIP_ARCHS: dict[str, dict[str, Any]] = {
    "ViT-B-32": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": _VIT_B},
    "ViT-B-16": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}, "text_cfg": _VIT_B},
    "ViT-L-14": {"embed_dim": 768, "vision_cfg": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": _VIT_L},
    "ViT-L-14-336": {"embed_dim": 768, "vision_cfg": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14}, "text_cfg": _VIT_L},
}
for _name in list(OPEN_CLIP_ARCHS):
    OPEN_CLIP_ARCHS[f"{_name}-quickgelu"] = {**OPEN_CLIP_ARCHS[_name], "quick_gelu": True}

_IGNORED_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask", "text.attn_mask")


def configs_from_open_clip(cfg: Mapping[str, Any], source: str) -> tuple[VisionConfig, TextConfig]:
    """An open_clip model config dict → our configs; unsupported towers are a TvrError."""
    try:
        vision, text, embed_dim = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"]), int(cfg["embed_dim"])
    except (KeyError, TypeError, ValueError):
        raise TvrError(f"{source}: an open_clip model config needs 'embed_dim', 'vision_cfg' and 'text_cfg'") from None
    if isinstance(vision.get("layers"), (list, tuple)) or vision.get("timm_model_name"):
        raise TvrError(f"{source}: only ViT image towers are supported (ResNet/timm towers are not)")
    if text.get("hf_model_name"):
        raise TvrError(f"{source}: Hugging Face text towers inside open_clip configs are not supported")
    for key in ("ls_init_value", "attentional_pool", "final_ln_after_pool", "no_ln_pre"):
        if vision.get(key) or text.get(key):
            raise TvrError(f"{source}: open_clip option {key!r} is not supported")
    quick_gelu = bool(cfg.get("quick_gelu", False))  # open_clip's default for its JSON configs
    width = int(vision.get("width", 768))
    return (
        VisionConfig(
            image_size=int(_scalar_size(vision.get("image_size", 224), source)),
            patch_size=int(vision.get("patch_size", 16)),
            width=width,
            layers=int(vision.get("layers", 12)),
            heads=width // int(vision.get("head_width", 64)),
            output_dim=embed_dim,
            mlp_ratio=float(vision.get("mlp_ratio", 4.0)),
            quick_gelu=quick_gelu,
        ),
        TextConfig(
            context_length=int(text.get("context_length", 77)),
            vocab_size=int(text.get("vocab_size", 49408)),
            width=int(text.get("width", 512)),
            layers=int(text.get("layers", 12)),
            heads=int(text.get("heads", 8)),
            output_dim=embed_dim,
            mlp_ratio=float(text.get("mlp_ratio", 4.0)),
            quick_gelu=quick_gelu,
        ),
    )


def _scalar_size(size: Any, source: str) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise TvrError(f"{source}: only square image sizes are supported, got {size}")
        return int(size[0])
    return int(size)


def clean_open_clip_state_dict(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap training checkpoints ({"state_dict": …}, DDP "module." prefixes), drop non-weights."""
    if "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    out = {}
    for key, value in sd.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if key in _IGNORED_KEYS or not isinstance(value, torch.Tensor):
            continue
        out[key] = value
    return out


def infer_configs(sd: Mapping[str, torch.Tensor], source: str, quick_gelu: bool = True) -> tuple[VisionConfig, TextConfig]:
    """Architecture from tensor shapes (OpenAI-style ViT checkpoints; heads assumed width/64)."""
    try:
        conv = sd["visual.conv1.weight"]
        vision_width, patch = conv.shape[0], conv.shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        text_width = sd["ln_final.weight"].shape[0]
        embed_dim = sd["text_projection"].shape[1]
        vision_out = sd["visual.proj"].shape[1]
        vision_mlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        text_mlp = sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    except KeyError as exc:
        raise TvrError(f"{source}: not a CLIP ViT state dict in the OpenAI/open_clip layout (no {exc})") from None
    if vision_out != embed_dim:
        raise TvrError(f"{source}: image and text projections disagree ({vision_out} vs {embed_dim})")

    def count(pattern: str) -> int:
        return len({m.group(1) for k in sd if (m := re.match(pattern, k))})

    return (
        VisionConfig(
            image_size=patch * grid,
            patch_size=patch,
            width=vision_width,
            layers=count(r"visual\.transformer\.resblocks\.(\d+)\."),
            heads=max(1, vision_width // 64),
            output_dim=embed_dim,
            mlp_ratio=vision_mlp / vision_width,
            quick_gelu=quick_gelu,
        ),
        TextConfig(
            context_length=sd["positional_embedding"].shape[0],
            vocab_size=sd["token_embedding.weight"].shape[0],
            width=text_width,
            layers=count(r"transformer\.resblocks\.(\d+)\."),
            heads=max(1, text_width // 64),
            output_dim=embed_dim,
            mlp_ratio=text_mlp / text_width,
            quick_gelu=quick_gelu,
        ),
    )


def configs_from_hf(config: Any, source: str) -> tuple[VisionConfig, TextConfig]:
    """transformers `CLIPConfig` → our configs."""
    v, t = config.vision_config, config.text_config

    def quick(cfg: Any) -> bool:
        act = getattr(cfg, "hidden_act", "quick_gelu")
        if act not in ("quick_gelu", "gelu"):
            raise TvrError(f"{source}: activation {act!r} is not supported (quick_gelu or gelu)")
        return act == "quick_gelu"

    for cfg in (v, t):
        if abs(float(getattr(cfg, "layer_norm_eps", 1e-5)) - 1e-5) > 1e-12:
            raise TvrError(f"{source}: layer_norm_eps {cfg.layer_norm_eps} is not supported (only 1e-5)")
    return (
        VisionConfig(
            image_size=int(v.image_size),
            patch_size=int(v.patch_size),
            width=int(v.hidden_size),
            layers=int(v.num_hidden_layers),
            heads=int(v.num_attention_heads),
            output_dim=int(config.projection_dim),
            mlp_ratio=v.intermediate_size / v.hidden_size,
            quick_gelu=quick(v),
        ),
        TextConfig(
            context_length=int(t.max_position_embeddings),
            vocab_size=int(t.vocab_size),
            width=int(t.hidden_size),
            layers=int(t.num_hidden_layers),
            heads=int(t.num_attention_heads),
            output_dim=int(config.projection_dim),
            mlp_ratio=t.intermediate_size / t.hidden_size,
            quick_gelu=quick(t),
        ),
    )


# open_clip name ↔ Hugging Face name, shared by both directions of the conversion
_SINGLES = (  # (open_clip, Hugging Face, stored transposed): tensors outside the residual stacks
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", False),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding", False),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", False),
    ("visual.proj", "visual_projection.weight", True),
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight", False),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight", False),
    ("text_projection", "text_projection.weight", True),
    ("logit_scale", "logit_scale", False),
)
_NORMS = (
    ("visual.ln_pre", "vision_model.pre_layrnorm"),
    ("visual.ln_post", "vision_model.post_layernorm"),
    ("ln_final", "text_model.final_layer_norm"),
)
_STACKS = (("visual.transformer", "vision_model.encoder"), ("transformer", "text_model.encoder"))
_BLOCK_LINEARS = (  # per residual block, (weight, bias) pairs under these names
    ("attn.out_proj", "self_attn.out_proj"),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)


def hf_to_open_clip(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face CLIPModel weights → open_clip names (q/k/v concatenated, projections transposed)."""
    out = {ours: sd[theirs].t() if transposed else sd[theirs] for ours, theirs, transposed in _SINGLES}
    out["logit_scale"] = out["logit_scale"].reshape(())
    for ours, theirs in _NORMS:
        out[f"{ours}.weight"], out[f"{ours}.bias"] = sd[f"{theirs}.weight"], sd[f"{theirs}.bias"]
    for ours, theirs in _STACKS:
        layer = 0
        while f"{theirs}.layers.{layer}.layer_norm1.weight" in sd:
            src, dst = f"{theirs}.layers.{layer}", f"{ours}.resblocks.{layer}"
            attn = f"{src}.self_attn"
            out[f"{dst}.attn.in_proj_weight"] = torch.cat([sd[f"{attn}.{p}_proj.weight"] for p in "qkv"])
            out[f"{dst}.attn.in_proj_bias"] = torch.cat([sd[f"{attn}.{p}_proj.bias"] for p in "qkv"])
            for a, b in _BLOCK_LINEARS:
                out[f"{dst}.{a}.weight"], out[f"{dst}.{a}.bias"] = sd[f"{src}.{b}.weight"], sd[f"{src}.{b}.bias"]
            layer += 1
    return {k: v.contiguous() for k, v in out.items()}


def open_clip_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip names → Hugging Face CLIPModel weights; the exact inverse of `hf_to_open_clip`."""
    out = {theirs: sd[ours].t() if transposed else sd[ours] for ours, theirs, transposed in _SINGLES}
    out["logit_scale"] = out["logit_scale"].reshape(())
    for ours, theirs in _NORMS:
        out[f"{theirs}.weight"], out[f"{theirs}.bias"] = sd[f"{ours}.weight"], sd[f"{ours}.bias"]
    for ours, theirs in _STACKS:
        layer = 0
        while f"{ours}.resblocks.{layer}.ln_1.weight" in sd:
            src, dst = f"{ours}.resblocks.{layer}", f"{theirs}.layers.{layer}"
            for name, tensor in (("weight", sd[f"{src}.attn.in_proj_weight"]), ("bias", sd[f"{src}.attn.in_proj_bias"])):
                for proj, part in zip("qkv", tensor.chunk(3)):
                    out[f"{dst}.self_attn.{proj}_proj.{name}"] = part
            for a, b in _BLOCK_LINEARS:
                out[f"{dst}.{b}.weight"], out[f"{dst}.{b}.bias"] = sd[f"{src}.{a}.weight"], sd[f"{src}.{a}.bias"]
            layer += 1
    return {k: v.detach().contiguous() for k, v in out.items()}


def hf_config_dict(vision: VisionConfig, text: TextConfig, *, bos_id: int, eos_id: int, pad_id: int) -> dict[str, Any]:
    """A transformers `CLIPConfig` as a dict for our tower configs (the inverse of `configs_from_hf`)."""
    def act(quick: bool) -> str:
        return "quick_gelu" if quick else "gelu"

    return {
        "projection_dim": vision.output_dim,
        "logit_scale_init_value": 2.6592,
        "vision_config": {
            "image_size": vision.image_size, "patch_size": vision.patch_size, "hidden_size": vision.width,
            "intermediate_size": int(vision.width * vision.mlp_ratio), "num_hidden_layers": vision.layers,
            "num_attention_heads": vision.heads, "hidden_act": act(vision.quick_gelu), "layer_norm_eps": 1e-5,
            "projection_dim": vision.output_dim,
        },
        "text_config": {
            "vocab_size": text.vocab_size, "max_position_embeddings": text.context_length, "hidden_size": text.width,
            "intermediate_size": int(text.width * text.mlp_ratio), "num_hidden_layers": text.layers,
            "num_attention_heads": text.heads, "hidden_act": act(text.quick_gelu), "layer_norm_eps": 1e-5,
            "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id, "projection_dim": text.output_dim,
        },
    }
