"""Load real CLIP checkpoints into `ClipModel`, and the frozen CLIP frame / caption encoders.

`load_clip` accepts what users actually have on disk:
- a Hugging Face `CLIPModel` folder (config.json + model.safetensors / pytorch_model.bin), read with
  transformers offline and converted to the open_clip layout;
- an open_clip Hugging Face hub folder (open_clip_config.json + open_clip_model.safetensors / .bin);
- an open_clip model name (ViT-B-32, ViT-B-16, ViT-L-14, …, "-quickgelu" variants) or model-config
  JSON plus `checkpoint=` a .safetensors / .pt / .bin state dict;
- a bare OpenAI/open_clip state-dict file: the architecture is inferred from tensor shapes.
.pt/.bin files are read with `torch.load(weights_only=True)`; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from tvr.devices import resolve_device
from tvr.encoders.base import TextEncoder, TextFeatures, VideoEncoder
from tvr.encoders.clip_convert import (
    OPEN_CLIP_ARCHS,
    clean_open_clip_state_dict,
    configs_from_hf,
    configs_from_open_clip,
    hf_config_dict,
    hf_to_open_clip,
    infer_configs,
    open_clip_to_hf,
)
from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig, VisionTransformer
from tvr.encoders.frames import CLIP_MEAN, CLIP_STD, frames_to_unit, normalise
from tvr.encoders.registry import TEXT_ENCODERS, VIDEO_ENCODERS
from tvr.encoders.tokenizer import HFTokenizer, Tokenizer, has_hf_tokenizer, load_tokenizer
from tvr.errors import TvrError
from tvr.io.decoded import DecodedVideo, DecodeSpec

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class PreprocessInfo:
    """How frames must be prepared for the image tower (resize+crop to image_size, then normalise)."""

    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


def load_clip(
    path_or_name: str | Path,
    *,
    checkpoint: str | Path | None = None,
    tokenizer: str | Path | None = None,
    quick_gelu: bool | None = None,
) -> tuple[ClipModel, Tokenizer | None, PreprocessInfo]:
    """(model in eval mode on CPU, tokenizer or None when none is found, preprocessing).

    `tokenizer` overrides where the tokenizer is read from (a Hugging Face tokenizer folder or a tvr
    word-tokenizer JSON); by default it is looked for beside the weights. `quick_gelu` overrides the
    activation for open_clip names/configs and inferred state dicts (OpenAI weights need QuickGELU).
    """
    path = Path(path_or_name)
    if checkpoint is None:
        if path.is_dir():
            if (path / "open_clip_config.json").is_file():
                model, preprocess, tok_dir = _load_open_clip_hub_dir(path, quick_gelu)
            elif (path / "config.json").is_file():
                model, preprocess, tok_dir = _load_hf_dir(path)
            else:
                raise TvrError(f"{path} holds neither a Hugging Face CLIP config.json nor an open_clip_config.json")
        elif path.is_file():
            if path.suffix == ".json":
                raise TvrError(f"{path} is a model config; pass the weights with checkpoint=/--checkpoint")
            sd = read_state_dict(path)
            vision, text = infer_configs(sd, str(path), quick_gelu=True if quick_gelu is None else quick_gelu)
            model = _build(vision, text, sd, str(path))
            preprocess, tok_dir = PreprocessInfo(vision.image_size), path.parent
        elif str(path_or_name) in OPEN_CLIP_ARCHS:
            raise TvrError(f"open_clip model {path_or_name!r} needs its weights: pass checkpoint=/--checkpoint FILE")
        else:
            raise TvrError(f"CLIP checkpoint {path} does not exist")
    else:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise TvrError(f"checkpoint file {ckpt} does not exist")
        cfg = _open_clip_config(path_or_name)
        if quick_gelu is not None:
            cfg = {**cfg, "quick_gelu": quick_gelu}
        vision, text = configs_from_open_clip(cfg, str(path_or_name))
        model = _build(vision, text, read_state_dict(ckpt), str(ckpt))
        preprocess, tok_dir = PreprocessInfo(vision.image_size), ckpt.parent
    if tokenizer is not None:
        tok: Tokenizer | None = load_tokenizer(tokenizer)
    else:
        tok = HFTokenizer(tok_dir) if has_hf_tokenizer(tok_dir) else None
    return model.eval(), tok, preprocess


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from .safetensors, or .pt/.bin with torch.load(weights_only=True); open_clip wrappers removed."""
    path = Path(path)
    if not path.is_file():
        raise TvrError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path))
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a readable weights file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TvrError(
            f"cannot read weights from {path}: {first} (TorchScript archives such as OpenAI's original .pt "
            "files are not accepted; convert them to a state dict)"
        ) from None
    if not isinstance(raw, dict):
        raise TvrError(f"{path} does not hold a state dict (got {type(raw).__name__})")
    return clean_open_clip_state_dict(raw)


def _open_clip_config(path_or_name: str | Path) -> dict[str, Any]:
    name = str(path_or_name)
    if name in OPEN_CLIP_ARCHS:
        return dict(OPEN_CLIP_ARCHS[name])
    path = Path(path_or_name)
    if path.is_file():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TvrError(f"open_clip model config {path} is not readable JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise TvrError(f"open_clip model config {path} is not a JSON object")
        return dict(doc.get("model_cfg", doc))
    raise TvrError(
        f"unknown open_clip model {name!r}: give a model-config JSON file or one of {', '.join(sorted(OPEN_CLIP_ARCHS))}"
    )


def _build(vision: VisionConfig, text: TextConfig, sd: dict[str, torch.Tensor], source: str) -> ClipModel:
    model = ClipModel(vision, text)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise TvrError(
            f"{source}: weights do not match the CLIP ViT layout (missing: {', '.join(missing[:4]) or '-'}; "
            f"unexpected: {', '.join(unexpected[:4]) or '-'})"
        )
    bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise TvrError(f"{source}: tensor {k} has shape {tuple(sd[k].shape)}, the config expects {tuple(expected[k].shape)}")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model


def _load_hf_dir(path: Path) -> tuple[ClipModel, PreprocessInfo, Path]:
    from transformers import CLIPConfig, CLIPModel
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar on every load is noise on stderr
    try:
        config = CLIPConfig.from_pretrained(str(path), local_files_only=True)
        hf = CLIPModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise TvrError(f"cannot load a Hugging Face CLIPModel from {path}: {exc}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    vision, text = configs_from_hf(config, str(path))
    model = _build(vision, text, hf_to_open_clip(hf.state_dict()), str(path))
    mean, std = CLIP_MEAN, CLIP_STD
    pre_file = path / "preprocessor_config.json"
    if pre_file.is_file():
        try:
            pre = json.loads(pre_file.read_text(encoding="utf-8"))
            mean, std = tuple(pre.get("image_mean", mean)), tuple(pre.get("image_std", std))
        except (OSError, ValueError) as exc:
            raise TvrError(f"{pre_file} is not readable JSON: {exc}") from None
    return model, PreprocessInfo(vision.image_size, mean, std), path  # type: ignore[arg-type]


def _load_open_clip_hub_dir(path: Path, quick_gelu: bool | None) -> tuple[ClipModel, PreprocessInfo, Path]:
    doc = _open_clip_config(path / "open_clip_config.json")
    if quick_gelu is not None:
        doc = {**doc, "quick_gelu": quick_gelu}
    vision, text = configs_from_open_clip(doc, str(path))
    weights = next(
        (path / n for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin") if (path / n).is_file()), None
    )
    if weights is None:
        raise TvrError(f"{path} has no open_clip_model.safetensors or open_clip_pytorch_model.bin")
    model = _build(vision, text, read_state_dict(weights), str(weights))
    pre = json.loads((path / "open_clip_config.json").read_text(encoding="utf-8")).get("preprocess_cfg", {})
    info = PreprocessInfo(vision.image_size, tuple(pre.get("mean", CLIP_MEAN)), tuple(pre.get("std", CLIP_STD)))  # type: ignore[arg-type]
    return model, info, path


def save_hf_clip(
    model: ClipModel, directory: str | Path, *, tokenizer_dir: str | Path, mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> None:
    """Write `model` as a Hugging Face `CLIPModel` folder (config.json + model.safetensors, written by
    transformers itself), with the tokenizer files of `tokenizer_dir` and a preprocessor_config.json.

    `directory` must not exist yet or be empty; callers wanting atomicity write to a temporary folder.
    """
    from transformers import CLIPConfig, CLIPModel

    tok = HFTokenizer(tokenizer_dir)
    hf_tok = tok.hf_tokenizer
    bos = hf_tok.bos_token_id if hf_tok.bos_token_id is not None else hf_tok.cls_token_id
    pad = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else tok.eot_id
    config = CLIPConfig(**hf_config_dict(model.vision_config, model.text_config, bos_id=int(bos), eos_id=tok.eot_id, pad_id=int(pad)))
    hf = CLIPModel(config)
    missing, unexpected = hf.load_state_dict(open_clip_to_hf(model.state_dict()), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"CLIPModel weights do not line up: missing {missing[:3]}, unexpected {unexpected[:3]}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' bar for one shard: the caller's own progress (or --quiet) speaks
    try:
        hf.save_pretrained(str(out))
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    hf_tok.save_pretrained(str(out))
    size = model.vision_config.image_size
    pre = {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
        "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_normalize": True,
        "image_mean": [float(m) for m in mean], "image_std": [float(s) for s in std], "do_rescale": True,
        "rescale_factor": 1 / 255,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")


def fingerprint(*items: str | Path) -> str:
    """sha256 over files' bytes (a folder: its top-level files) and plain strings, for versions."""
    h = hashlib.sha256()
    for item in items:
        p = Path(item)
        files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
        if not files:
            h.update(f"str:{item}\0".encode())
        for f in files:
            h.update(f"file:{f.name}\0".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def encode_frames(
    visual: VisionTransformer,
    preprocess: PreprocessInfo,
    videos: Sequence[DecodedVideo],
    *,
    patch_tokens: bool,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> list[dict[str, np.ndarray]]:
    """Frames of all videos in shared batches → per-video "frame_cls" [T,D] (+ "patch_tokens" [T,L,D])."""
    counts = [len(v.frames) for v in videos]
    cls_out: list[torch.Tensor] = []
    patch_out: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.cat(pending)
        pending.clear()
        for start in range(0, len(batch), batch_size):
            x = normalise(batch[start : start + batch_size].to(device), preprocess.mean, preprocess.std).to(dtype)
            cls, patches = visual(x)
            cls_out.append(cls.float().cpu())
            if patch_tokens:
                patch_out.append(patches.to(torch.float16).cpu())

    with torch.inference_mode():
        queued = 0
        for video in videos:
            if len(video.frames):
                pending.append(frames_to_unit(video.frames, preprocess.image_size))
                queued += len(video.frames)
            if queued >= batch_size:
                flush()
                queued = 0
        flush()
    dim = visual.config.output_dim
    cls_all = torch.cat(cls_out) if cls_out else torch.zeros(0, dim)
    patch_all = torch.cat(patch_out) if patch_out else torch.zeros(0, visual.num_patches, dim, dtype=torch.float16)
    results = []
    for video, cls, patches in zip(videos, cls_all.split(counts), patch_all.split(counts) if patch_tokens else counts):
        out = {"frame_cls": cls.numpy(), "timestamps": np.asarray(video.timestamps_s, dtype=np.float32)}
        if patch_tokens:
            out["patch_tokens"] = patches.numpy()  # type: ignore[union-attr]
        results.append(out)
    return results


def encode_captions(
    model: ClipModel, tokenizer: Tokenizer, texts: Sequence[str], *, context_length: int, batch_size: int, device: torch.device
) -> TextFeatures:
    """Captions → projected token states, mask and EOT vectors; W is trimmed to the longest caption."""
    ids, mask = tokenizer(list(texts), context_length)
    width = max(1, int(mask.sum(dim=1).max())) if len(texts) else 1
    ids, mask = ids[:, :width], mask[:, :width]
    states, pooled, valid = [], [], []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            s, e, m = model.text(ids[start : start + batch_size].to(device), mask[start : start + batch_size].to(device))
            states.append(s.float().cpu())
            pooled.append(e.float().cpu())
            valid.append(m.cpu())
    dim = model.text_config.output_dim
    return TextFeatures(
        tokens=torch.cat(states).numpy() if states else np.zeros((0, width, dim), np.float32),
        mask=torch.cat(valid).numpy() if valid else np.zeros((0, width), bool),
        pooled=torch.cat(pooled).numpy() if pooled else np.zeros((0, dim), np.float32),
    )


def frame_decode_spec(num_frames: int, fps: float | None, size: int) -> DecodeSpec:
    """Uniform `num_frames`, or `fps` sampling when fps is set."""
    return DecodeSpec(num_frames=None if fps else num_frames, fps=fps, size=size)


@dataclass(frozen=True)
class ClipEncoderConfig:
    checkpoint: str = ""  # HF CLIPModel folder, open_clip hub folder, or weights file
    model: str = ""  # open_clip model name / config JSON when `checkpoint` is a bare weights file
    num_frames: int = 12
    fps: float | None = None  # sample at this rate instead of num_frames uniformly
    patch_tokens: bool = False  # also return projected patch tokens (float16) for TS2-Net/ProST/CrossTVR
    batch_size: int = 64  # frames per forward pass, across videos
    device: str = "auto"
    fp16: bool = False  # half-precision forward (CUDA)
    quick_gelu: bool | None = None  # override the activation (OpenAI weights need QuickGELU)


def _load_for(config: Any) -> tuple[ClipModel, Tokenizer | None, PreprocessInfo, str]:
    if not config.checkpoint:
        raise TvrError("the clip encoder needs the option checkpoint=PATH (a CLIP folder or weights file)")
    tokenizer = getattr(config, "tokenizer", "") or None
    if config.model:
        model, tok, pre = load_clip(config.model, checkpoint=config.checkpoint, tokenizer=tokenizer, quick_gelu=config.quick_gelu)
        digest = fingerprint(config.checkpoint, config.model)
    else:
        model, tok, pre = load_clip(config.checkpoint, tokenizer=tokenizer, quick_gelu=config.quick_gelu)
        digest = fingerprint(config.checkpoint)
    return model, tok, pre, f"{digest}-qg{int(model.vision_config.quick_gelu)}"


class FrozenTowerEncoder(VideoEncoder):
    """A frozen CLIP-layout image tower run on sampled frames: the body every such encoder shares.

    Subclasses build the tower and its version string; sampling, batching and outputs are common.
    """

    outputs: ClassVar[tuple[str, ...]] = ("frame_cls [T,D]", "patch_tokens [T,L,D] (patch_tokens=true)", "timestamps [T]")

    def __init__(self, config, visual: VisionTransformer, preprocess: PreprocessInfo, version: str,
                 dtype: torch.dtype = torch.float32) -> None:
        self.config = config  # needs num_frames, fps, patch_tokens, batch_size, device
        self.device = resolve_device(config.device)
        self.dtype = dtype
        self.visual = visual.to(self.device, dtype).eval().requires_grad_(False)
        self.preprocess = preprocess
        sampling = f"fps{config.fps:g}" if config.fps else f"n{config.num_frames}"
        self._version = f"{version}-{sampling}-p{int(config.patch_tokens)}"

    @property
    def version(self) -> str:
        return self._version

    def decode_spec(self) -> DecodeSpec:
        return frame_decode_spec(self.config.num_frames, self.config.fps, self.preprocess.image_size)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        return encode_frames(
            self.visual,
            self.preprocess,
            videos,
            patch_tokens=self.config.patch_tokens,
            batch_size=self.config.batch_size,
            device=self.device,
            dtype=self.dtype,
        )


@VIDEO_ENCODERS.register("clip")
class ClipVideoEncoder(FrozenTowerEncoder):
    """Frozen CLIP image tower on sampled frames (HF CLIPModel or open_clip checkpoint)."""

    name: ClassVar[str] = "clip"
    config_cls: ClassVar[type] = ClipEncoderConfig

    def __init__(self, config: ClipEncoderConfig) -> None:
        model, _, preprocess, digest = _load_for(config)
        super().__init__(config, model.visual, preprocess, f"clip-{digest}",
                         torch.float16 if config.fp16 else torch.float32)
        if config.fp16:
            self._version += "-fp16"


@dataclass(frozen=True)
class ClipTextEncoderConfig:
    checkpoint: str = ""
    model: str = ""
    tokenizer: str = ""  # tokenizer folder/JSON when none sits beside the weights
    context_length: int | None = None  # default: the model's
    batch_size: int = 256
    device: str = "auto"
    quick_gelu: bool | None = None


@TEXT_ENCODERS.register("clip")
class ClipTextEncoder(TextEncoder):
    """Frozen CLIP text tower: projected token states, mask and the EOT embedding."""

    name: ClassVar[str] = "clip"
    config_cls: ClassVar[type] = ClipTextEncoderConfig
    outputs: ClassVar[tuple[str, ...]] = ("tokens [B,W,D]", "mask [B,W]", "pooled [B,D] (EOT)")

    def __init__(self, config: ClipTextEncoderConfig) -> None:
        self.config = config
        model, tok, _, digest = _load_for(config)
        if tok is None:
            raise TvrError(f"no tokenizer found beside {config.checkpoint}; pass the option tokenizer=DIR")
        self.tokenizer = tok
        self.device = resolve_device(config.device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.context_length = config.context_length or model.text_config.context_length
        self._version = f"clip-text-{digest}-{tok.version}-c{self.context_length}"

    @property
    def version(self) -> str:
        return self._version

    def encode_text(self, texts: Sequence[str]) -> TextFeatures:
        return encode_captions(
            self.model, self.tokenizer, texts, context_length=self.context_length, batch_size=self.config.batch_size, device=self.device
        )
