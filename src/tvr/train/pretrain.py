"""Pretrain the CLIP-layout backbone like CLIP: contrastive image-text on unlimited synthetic stills.

Every paper fine-tunes a pretrained CLIP; none can be downloaded here, so the lab makes its own.
`pretrain` trains a ViT image tower and a causal text tower with the symmetric InfoNCE loss on stills
rendered on the fly (`synth/stills.py`), and saves them as a Hugging Face `CLIPModel` folder,
the format real users hold. The text tower reads English with MiniLM's WordPiece tokenizer, and its
token embeddings start from MiniLM's (and stay frozen by default), so words the stills never use sit
near the words they mean.

`ensure_backbone` builds the default backbone once per machine into the user cache folder
(`$TVR_CACHE_DIR`, else `$XDG_CACHE_HOME/tvr`, else `~/.cache/tvr`): under a file lock, so two
processes never build it twice, resuming an interrupted build, and published with one rename.
The presets name it as `backbone.pretrained: "synthetic-clip"`; `with_synthetic_backbone` turns that
name into the folder before a model is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tvr.atomic import atomic_write_json
from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig
from tvr.encoders.frames import pixel_scale
from tvr.errors import TvrError
from tvr.train.checkpoint import load_optimizer, optimizer_tensors
from tvr.train.schedule import apply_lr, lr_factor

SYNTHETIC_BACKBONE = "synthetic-clip"  # the name presets use for the default pretrained backbone
CACHE_ENV = "TVR_CACHE_DIR"
FORMAT_VERSION = 1
INFO_FILE = "tvr_pretrain.json"  # written last into a finished folder: config, steps, timings
STATE_FILE = "state.json"
STATE_TENSORS = "state.safetensors"
TEXT_LENGTH_GROUPS = 4  # runs of similar caption length per text pass (encode_text_by_length)


def declared_floats(config: Any) -> None:
    """Store every int given to a dataclass field declared `float` as a float (from `__post_init__`), so
    `"distill": 5` in a JSON config and `--distill 5` on the command line make one recipe: one cache
    key, one folder, one resumable build."""
    for f in fields(config):
        value = getattr(config, f.name)
        declared = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))  # postponed or not
        if declared.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, f.name, float(value))


@dataclass(frozen=True)
class PretrainConfig:
    """The backbone's shape and its pretraining recipe (defaults: the synthetic CLIP of the presets)."""

    steps: int = 1200  # × 256 stills ≈ 307k images, about 23 min on 2 cores with the distillation below
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 60
    min_lr_ratio: float = 0.05
    image_size: int = 64
    patch_size: int = 16
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 256  # token embeddings start from MiniLM's (384-d), PCA-reduced to this width
    text_layers: int = 2
    text_heads: int = 4
    embed_dim: int = 128
    context_length: int = 32
    freeze_token_embedding: bool = True
    foils: float = 0.0  # fraction of each batch whose caption also enters as a shape-swapped hard negative
    beside: float = 0.0  # fraction of stills holding a small object right beside a large one (synth/stills.py)
    twins: float = 0.0  # fraction of each batch made of twin pairs: a still and itself with a shape changed
    attributes: float = 0.0  # weight of the attribute loss: which (colour, shape, size) each still shows
    # weight of dense distillation: patch tokens predict the objects network's feature map. 5 against 0:
    # meanP R@1 14.9 against 12.5 (three seeds), ProST 24.9 against 15.1 (bench/results/pretrain_distill.json,
    # prost_distill_seed_*.json)
    distill: float = 5.0
    # steps of the distillation teacher; 0: the objects network's default (1,200), the CNN MMT's `objects`
    # expert reads, so one build serves both. 600 halves the teacher's build (5 min, inside the 30-minute
    # budget) but gave meanP R@1 14.5 against 14.9 (three seeds) and ProST 14.9 against 24.9, the plain
    # backbone's level (bench/results/teacher_600.json)
    teacher_steps: int = 0
    checkpoint_every: int = 100  # steps between resumable checkpoints
    seed: int = 0

    def __post_init__(self) -> None:
        declared_floats(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                continue
            if f.type == "float":
                ok = value > 0 if f.name == "lr" else value >= 0
            else:
                ok = value >= (0 if f.name in ("warmup_steps", "seed", "teacher_steps") else 1)
            if not ok:
                raise ValueError(f"{f.name} is out of range: {value!r}")
        if self.min_lr_ratio > 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("foils", "beside", "twins"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (a contrastive batch needs a negative)")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    def key(self) -> str:
        """A short hash of everything that changes the weights (not the checkpoint interval)."""
        doc = {k: v for k, v in asdict(self).items() if k not in ("checkpoint_every", "teacher_steps")}  # the teacher's key holds its steps
        for name in ("foils", "beside", "twins", "attributes", "distill"):
            if not doc[name]:
                del doc[name]  # added later: backbones built before them keep their folder
        if self.distill:  # the teacher's recipe shapes the weights too
            doc["teacher"] = self.teacher_recipe().key()
        doc["format"] = FORMAT_VERSION
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]


    def teacher_recipe(self):
        """The recipe of the distillation teacher: the `objects` network's default at this image size (and
        `teacher_steps` steps where set)."""
        from tvr.train import object_pretrain

        default = object_pretrain.default_config()
        recipe = replace(default, image_size=self.image_size)
        if self.teacher_steps:  # the same share of warmup steps as the default's
            warmup = max(1, self.teacher_steps * default.warmup_steps // default.steps)
            recipe = replace(recipe, steps=self.teacher_steps, warmup_steps=warmup)
        return recipe


@dataclass(frozen=True)
class PretrainResult:
    path: Path
    steps: int
    wall_s: float  # this call only (0 when the folder already existed)
    cpu_s: float
    built: bool  # False: an existing folder was reused


def cache_root() -> Path:
    """Where built backbones live: $TVR_CACHE_DIR, else $XDG_CACHE_HOME/tvr, else ~/.cache/tvr."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tvr"


def backbone_dir(cfg: PretrainConfig) -> Path:
    return cache_root() / "pretrained" / f"{SYNTHETIC_BACKBONE}-{cfg.key()}"


def with_synthetic_backbone(model_cfg: Any, pretrain: PretrainConfig, *, progress: bool = True) -> Any:
    """`model_cfg` with `backbone.pretrained: "synthetic-clip"` replaced by the built folder (built now
    if this machine has none for `pretrain`); any other config is returned as it is."""
    if not reads_synthetic_backbone(model_cfg):
        return model_cfg
    path = ensure_backbone(pretrain, progress=progress).path
    return replace(model_cfg, backbone=replace(model_cfg.backbone, pretrained=str(path)))


def builds_backbone(model_cfg: Any) -> bool:
    """Whether a model built from `model_cfg` builds the backbone its config carries; MMT without its
    appearance expert does not (`reads_backbone`), every other model does."""
    return bool(getattr(model_cfg, "reads_backbone", True))


def reads_synthetic_backbone(model_cfg: Any) -> bool:
    """Whether a model built from `model_cfg` reads the backbone named "synthetic-clip"."""
    backbone = getattr(model_cfg, "backbone", None)
    return getattr(backbone, "pretrained", None) == SYNTHETIC_BACKBONE and builds_backbone(model_cfg)


def backbone_to_build(model_cfg: Any, pretrain: PretrainConfig) -> bool:
    """Whether `model_cfg` reads the synthetic backbone and this machine has not built it yet."""
    return reads_synthetic_backbone(model_cfg) and not _finished(backbone_dir(pretrain))


def stand_in_config(model_cfg: Any, pretrain: PretrainConfig) -> Any:
    """`model_cfg` with an untrained backbone of the synthetic one's input size: a model built from it
    takes the same frames, so videos can be decoded (and bad ones found) before a long build."""
    backbone = replace(model_cfg.backbone, pretrained=None)
    fields = {"backbone": backbone}
    if hasattr(model_cfg, "image_size"):
        fields["image_size"] = pretrain.image_size
    return replace(model_cfg, **fields)


def ensure_backbone(cfg: PretrainConfig, *, out: Path | None = None, progress: bool = True) -> PretrainResult:
    """The finished backbone folder for `cfg` (default: in the cache), built under a lock if missing."""
    final = out if out is not None else backbone_dir(cfg)
    if _finished(final):
        return PretrainResult(final, _info(final)["steps"], 0.0, 0.0, built=False)
    final.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(final):
        if _finished(final):  # another process built it while this one waited
            return PretrainResult(final, _info(final)["steps"], 0.0, 0.0, built=False)
        if final.exists():
            raise TvrError(f"{final} exists but is not a finished tvr backbone; remove it or pass --force")
        return _build(cfg, final, progress)


def _finished(path: Path) -> bool:
    return (path / INFO_FILE).is_file() and (path / "config.json").is_file()


def _info(path: Path) -> dict[str, Any]:
    return json.loads((path / INFO_FILE).read_text(encoding="utf-8"))


@contextlib.contextmanager
def build_lock(final: Path) -> Iterator[None]:
    """Hold FINAL.lock (flock: the kernel drops it when the holder dies); waits for another builder."""
    fd = os.open(final.parent / f"{final.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process building {final} …", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build_model(cfg: PretrainConfig, token_embedding: torch.Tensor) -> ClipModel:
    """A fresh CLIP-layout model whose token embeddings are `token_embedding` [vocab, text_width]."""
    torch.manual_seed(cfg.seed)
    vision = VisionConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, width=cfg.vision_width,
                          layers=cfg.vision_layers, heads=cfg.vision_heads, output_dim=cfg.embed_dim)
    text = TextConfig(context_length=cfg.context_length, vocab_size=token_embedding.shape[0], width=cfg.text_width,
                      layers=cfg.text_layers, heads=cfg.text_heads, output_dim=cfg.embed_dim)
    model = ClipModel(vision, text)
    with torch.no_grad():
        model.text.token_embedding.weight.copy_(reduce_width(token_embedding, cfg.text_width))
    model.text.token_embedding.weight.requires_grad_(not cfg.freeze_token_embedding)
    return model


def reduce_width(embedding: torch.Tensor, width: int) -> torch.Tensor:
    """[V, D] → [V, width]: the top `width` principal components (D ≤ width: zero-padded), rescaled to
    CLIP's embedding scale (std 0.02). Neighbours stay neighbours; the result is deterministic."""
    centred = embedding.double() - embedding.double().mean(dim=0)
    if width < embedding.shape[1]:
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        signs = torch.sign(vh[:, :1].sum(dim=1, keepdim=True) + 1e-30)  # fix each component's sign
        reduced = centred @ (vh[:width] * signs[:width]).t()
    else:
        reduced = torch.nn.functional.pad(centred, (0, width - embedding.shape[1]))
    return (reduced * (0.02 / reduced.std())).float()


def minilm_token_embedding() -> tuple[torch.Tensor, Path]:
    """(MiniLM's input word embeddings [30522, 384], its folder, which also holds the tokenizer)."""
    from safetensors.torch import load_file

    from tvr.encoders.minilm import minilm_path

    folder = minilm_path()
    weights = load_file(str(folder / "model.safetensors"))
    key = next((k for k in weights if k.endswith("embeddings.word_embeddings.weight")), None)
    if key is None:
        raise TvrError(f"{folder / 'model.safetensors'}: no word_embeddings tensor")
    return weights[key].float(), folder


def _build(cfg: PretrainConfig, final: Path, progress: bool) -> PretrainResult:
    from safetensors.torch import load_file, save_file

    from tvr.encoders.clip import save_hf_clip
    from tvr.encoders.tokenizer import HFTokenizer
    from tvr.progress import ProgressReport

    t0, c0 = time.monotonic(), time.process_time()
    work = final.parent / f"{final.name}.partial"
    work.mkdir(exist_ok=True)
    embedding, tok_dir = minilm_token_embedding()
    tokenizer = HFTokenizer(tok_dir)
    model = build_model(cfg, embedding)
    head = attribute_head(cfg)
    teacher = distill_teacher(cfg, progress)  # built first where missing: its cost is in its own folder's info
    dense = distill_head(cfg, teacher)
    tb, cb = time.monotonic(), time.process_time()  # the build's own cost starts here
    # what training updates and a checkpoint holds, by its prefix there (the heads are not saved in the folder)
    trained = {k: m for k, m in (("model", model), ("head", head), ("distill", dense)) if m is not None}
    named = [(n, p) for prefix, m in trained.items() for n, p in m.named_parameters(prefix=prefix)]
    decay = [p for n, p in named if p.requires_grad and p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in named if p.requires_grad and not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
              {"params": rest, "weight_decay": 0.0, "base_lr": cfg.lr}]
    optimizer = torch.optim.AdamW(groups,
                                  lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    step, spent = 0, {"wall_s": 0.0, "cpu_s": 0.0}
    state_path = work / STATE_FILE
    if state_path.is_file():
        doc = json.loads(state_path.read_text(encoding="utf-8"))
        if doc.get("config") != asdict(cfg):
            raise TvrError(f"{work}: holds a build with another config; remove the folder to start over")
        tensors = load_file(str(work / STATE_TENSORS))
        for prefix, m in trained.items():
            m.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(f"{prefix}.")})
        load_optimizer(optimizer, tensors, doc["param_groups"])
        step, spent = int(doc["step"]), doc["spent"]
    scale = pixel_scale()
    losses: list[float] = []

    def checkpoint() -> None:
        opt, groups = optimizer_tensors(optimizer)
        weights = {f"{prefix}.{k}": v.detach().contiguous().clone()
                   for prefix, m in trained.items() for k, v in m.state_dict().items()}
        tmp = work / f".{STATE_TENSORS}.tmp"
        save_file({**weights, **opt}, str(tmp))
        os.replace(tmp, work / STATE_TENSORS)
        now = {"wall_s": spent["wall_s"] + time.monotonic() - tb, "cpu_s": spent["cpu_s"] + time.process_time() - cb}
        atomic_write_json(state_path, {"step": step, "config": asdict(cfg), "param_groups": groups, "spent": now})

    model.train()
    with ProgressReport("pretraining the synthetic CLIP backbone", cfg.steps, "steps", enabled=progress) as bar:
        bar.advance(step)
        while step < cfg.steps:
            apply_lr(optimizer, lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
            images, ids, mask, targets = step_batch(cfg, step, tokenizer, scale)
            tokens = model.visual.forward_tokens(images)
            emb = model.visual.project(tokens[:, 0])  # = model.encode_image(images), one pass for every loss
            loss = contrastive_loss(model, images, ids, mask, image_emb=emb)
            if head is not None:
                loss = loss + cfg.attributes * attribute_loss(model, head, images, targets, image_emb=emb)
            if dense is not None:
                loss = loss + cfg.distill * distill_loss(model, dense, teacher, images, tokens, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)  # CLIP: temperature at most 100
            step += 1
            losses.append(float(loss.detach()))
            bar.advance(detail=f"loss {losses[-1]:.3f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                checkpoint()
    checkpoint()
    staging = final.parent / f".{final.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_hf_clip(model.eval(), staging, tokenizer_dir=tok_dir)
    total = json.loads(state_path.read_text(encoding="utf-8"))["spent"]
    heldout = heldout_accuracy(model, tokenizer, cfg)
    atomic_write_json(staging / INFO_FILE, {
        "format_version": FORMAT_VERSION, "name": SYNTHETIC_BACKBONE, "config": asdict(cfg), "steps": step,
        "images_seen": step * cfg.batch_size, "final_loss": losses[-1] if losses else None,
        "build_wall_s": round(total["wall_s"], 1), "build_cpu_s": round(total["cpu_s"], 1),
        "torch_threads": torch.get_num_threads(), "heldout_stills": heldout,
    } | ({"teacher": cfg.teacher_recipe().key()} if cfg.distill else {}))
    os.replace(staging, final)
    shutil.rmtree(work, ignore_errors=True)
    return PretrainResult(final, step, time.monotonic() - t0, time.process_time() - c0, built=True)


def step_batch(cfg: PretrainConfig, step: int, tokenizer, scale: tuple[torch.Tensor, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training step `step`'s stills: (images [B, 3, H, W] normalised by `scale` = (mean, std) on the
    0–255 scale, caption ids, mask, attribute targets [B, 48]), the foils' captions after the
    images' own."""
    from tvr.synth.stills import StillSampler, attribute_targets, lay_out

    n_twins = round(cfg.twins * cfg.batch_size / 2)
    n_foils = min(round(cfg.foils * cfg.batch_size), cfg.batch_size - 2 * n_twins)
    sampler = StillSampler([cfg.seed, step], cfg.image_size, cfg.beside)
    stills = sampler.stills(cfg.batch_size, n_foils, n_twins)
    pixels, captions, foils = lay_out(stills, n_foils, n_twins)
    ids, mask = tokenizer(captions + foils, cfg.context_length)
    mean, std = scale
    return (torch.from_numpy(pixels).float() - mean) / std, ids, mask, torch.from_numpy(attribute_targets(stills))


def attribute_head(cfg: PretrainConfig) -> torch.nn.Linear | None:
    """The linear read-out the attribute loss trains on the image embedding (None when it is off).
    It is not part of the saved CLIPModel: it only shapes what the image tower learns."""
    from tvr.synth.stills import ATTRIBUTES

    if not cfg.attributes:
        return None
    torch.manual_seed(cfg.seed + 1)
    return torch.nn.Linear(cfg.embed_dim, len(ATTRIBUTES))


def attribute_loss(model: ClipModel, head: torch.nn.Linear, images: torch.Tensor, targets: torch.Tensor, *,
                   image_emb: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of `head` on the normalised image embeddings against `targets` [B, A]
    (does the still show an object of each (colour, shape, size)?), summed over the A attributes and
    averaged over the stills; a mean over all A would weigh the one to three objects shown as 1/A of
    the absent ones. The renderer knows what it drew, so this is supervised pretraining, as image
    towers pretrained on labelled images have, added to the contrastive loss: captions name shapes
    in varied words and a batch rarely holds two stills that differ only by a shape."""
    img = F.normalize(model.encode_image(images) if image_emb is None else image_emb, dim=-1)
    return F.binary_cross_entropy_with_logits(head(img), targets, reduction="sum") / len(images)


def distill_teacher(cfg: PretrainConfig, progress: bool = True):
    """The frozen teacher of the distillation loss: the `objects` expert's CNN (`object_pretrain`, its
    recipe at the backbone's image size for `teacher_steps` steps), built first if this machine has
    none; None when the loss is off."""
    if not cfg.distill:
        return None
    from tvr.encoders.objects import load_object_net
    from tvr.train import object_pretrain

    net = load_object_net(object_pretrain.ensure_objects(cfg.teacher_recipe(), progress=progress).path).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def distill_head(cfg: PretrainConfig, teacher) -> torch.nn.Linear | None:
    """The linear map from a patch token to the teacher's feature vector (None when the loss is off);
    like the attribute head, it is not part of the saved CLIPModel."""
    if teacher is None:
        return None
    torch.manual_seed(cfg.seed + 2)
    return torch.nn.Linear(cfg.vision_width, teacher.config.dim)


def distill_loss(model: ClipModel, head: torch.nn.Linear, teacher, images: torch.Tensor, tokens: torch.Tensor,
                 scale: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Dense feature distillation: each patch token [N, 1+L, width] (`tokens`, before ln_post), mapped
    by `head`, predicts the teacher's last feature map at its place (average-pooled to the patch grid,
    layer-normalised over channels): mean squared error. The CNN names every object's shape on these
    stills, which the ViT learns slowly from captions or labels alone; its map tells each patch what
    lies under it, a dense signal where a label or caption gives one per image (as DeiT distils a
    CNN's inductive bias into a ViT, here at the feature map). `images` are normalised by `scale`
    (0–255, as `step_batch` gives them)."""
    mean, std = scale
    with torch.no_grad():
        fmap = teacher.feature_map((images * std + mean) / 255.0)  # [N, C, h, w] of the pixels in [0, 1]
        fmap = F.adaptive_avg_pool2d(fmap, model.visual.patch_grid)
        target = F.layer_norm(fmap.flatten(2).transpose(1, 2), (fmap.shape[1],))  # [N, L, C]
    return F.mse_loss(head(tokens[:, 1:]), target)


def heldout_accuracy(model: ClipModel, tokenizer, cfg: PretrainConfig,
                     scale: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Image→text and text→image R@1 (%) among 256 stills from a seed training never draws, and the
    shape check: on 256 one-object stills, how often the right shape's caption scores highest among
    the four shapes' ("a small red circle" vs "… square", "… triangle", "… cross"), small and large.
    `scale`: the image tower's (mean, std) on the 0–255 scale (default CLIP's, as pretraining uses)."""
    from tvr.synth.captions import COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS
    from tvr.synth.stills import StillSampler
    from tvr.synth.world import SHAPES

    mean, std = scale or pixel_scale()

    def encode_images(pixels: np.ndarray) -> torch.Tensor:
        return F.normalize(model.encode_image((torch.from_numpy(pixels).float() - mean) / std), dim=-1)

    def encode_texts(texts: list[str]) -> torch.Tensor:
        return F.normalize(model.encode_text(*tokenizer(texts, cfg.context_length)), dim=-1)

    pixels, captions = StillSampler([cfg.seed, -1 % 2**32], cfg.image_size).batch(256)
    with torch.no_grad():
        sim = encode_images(pixels) @ encode_texts(captions).t()
    target = torch.arange(len(captions))
    same = torch.tensor([[a == b for b in captions] for a in captions])  # an identical caption is a hit too
    i2t = same[target, sim.argmax(dim=1)].float().mean().item() * 100
    t2i = same[target, sim.argmax(dim=0)].float().mean().item() * 100

    frames, objects = StillSampler([cfg.seed, -2 % 2**32], cfg.image_size).one_object_stills(256)
    texts = [f"a {SIZE_WORDS[o.size][0]} {COLOUR_WORDS[o.colour][0]} {SHAPE_WORDS[s][0]}" for o in objects for s in SHAPES]
    with torch.no_grad():
        images = encode_images(frames)
        scores = (images[:, None, :] * encode_texts(texts).view(len(objects), len(SHAPES), -1)).sum(-1)
    right = scores.argmax(dim=1) == torch.tensor([SHAPES.index(o.shape) for o in objects])
    shape = {size: round(right[[o.size == size for o in objects]].float().mean().item() * 100, 1)
             for size in ("small", "large")}
    return {"stills": len(captions), "i2t_R@1": round(i2t, 1), "t2i_R@1": round(t2i, 1),
            "shape_R@1_small": shape["small"], "shape_R@1_large": shape["large"], "shape_chance": 25.0}


def contrastive_loss(model: ClipModel, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                     text_groups: int = TEXT_LENGTH_GROUPS, *, image_emb: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (image, caption) pairs; identical captions are not negatives.

    `ids` may hold more captions than there are images: the extra ones (foils) are hard negatives for
    the image→text direction only, as in NegCLIP (Yuksekgonul et al., 2023); text→image stays over
    the images' own captions. The captions are encoded in `text_groups` runs of similar length
    (`encode_text_by_length`; 1: one pass padded to the longest caption). `image_emb`: the images'
    embeddings when the caller already has them."""
    n = len(images)
    img = F.normalize(model.encode_image(images) if image_emb is None else image_emb, dim=-1)
    txt = F.normalize(encode_text_by_length(model, ids, mask, text_groups), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()  # [n, n + foils]
    same = (ids[:n, None, :] == ids[None, :, :]).all(-1)
    same[torch.arange(n), torch.arange(n)] = False
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(n)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :n].t(), target)) / 2


def encode_text_by_length(model: ClipModel, ids: torch.Tensor, mask: torch.Tensor,
                          groups: int = TEXT_LENGTH_GROUPS) -> torch.Tensor:
    """EOT embeddings [B, D] of captions `ids` [B, W], in the order given.

    The captions are encoded in `groups` runs of similar length, each cut to its own longest
    caption. The text tower is causal, so the padding after a caption changes nothing in its
    embedding: this gives one padded pass's result (up to float rounding) for the cost of the real
    tokens, about half a padded pass on the stills' captions (13 tokens on average, 31 at most).
    """
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for rows in order.tensor_split(min(groups, len(order))):
        width = max(1, int(lengths[rows].max()))
        parts.append(model.encode_text(ids[rows, :width], mask[rows, :width]))
    return torch.cat(parts)[torch.argsort(order)]
