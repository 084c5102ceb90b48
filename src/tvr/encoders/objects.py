"""`objects` expert: per-frame features of a small CNN trained to name the objects a frame shows.

MMT's experts are networks pretrained on labelled data (an ImageNet classifier for appearance, a
Kinetics one for motion, VGGish for audio, a Places one for scenes). This is the synthetic world's
counterpart: a convolutional network trained (`tvr.train.object_pretrain`) on rendered stills to tell
which (colour, shape, size) objects each one holds. Convolutions read small shapes from few images far
better than the ViT backbone does, which is where retrieval on this world loses most queries.

A built network is a folder: `config.json` (the layer widths, input size, pixel scale and the label
names) and `model.safetensors` (never a pickle). The encoder decodes `num_frames` frames at the
network's input size and stores each frame's pooled features ("objects" [T, D]) with their times.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from tvr.encoders.base import VideoEncoder
from tvr.encoders.frames import frames_to_unit
from tvr.encoders.registry import VIDEO_ENCODERS
from tvr.errors import TvrError
from tvr.io.decoded import DecodedVideo, DecodeSpec

SYNTHETIC_OBJECTS = "synthetic-objects"  # the default network's name, resolved to its cache folder by `tvr train`
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "tvr-object-net-1"


@dataclass(frozen=True)
class ObjectNetConfig:
    """Conv 3×3 + BatchNorm + ReLU blocks (`widths`, stride 2 where `strides` says), global max pool,
    then a linear read-out over `labels`."""

    image_size: int = 64
    widths: tuple[int, ...] = (32, 48, 64, 96, 128, 160)
    strides: tuple[int, ...] = (1, 2, 1, 2, 2, 2)
    labels: tuple[str, ...] = ()
    mean: float = 0.45  # pixels in [0, 1] → (x − mean) / std
    std: float = 0.25

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.strides) or not self.widths:
            raise ValueError("widths and strides must be non-empty and of the same length")
        if self.image_size < 8 or min(self.widths) < 1 or any(s not in (1, 2) for s in self.strides):
            raise ValueError("image_size must be ≥ 8, widths ≥ 1 and strides 1 or 2")

    @property
    def dim(self) -> int:
        return self.widths[-1]


class ObjectNet(nn.Module):
    def __init__(self, config: ObjectNetConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = 3
        for out, stride in zip(config.widths, config.strides, strict=True):
            layers += [nn.Conv2d(width, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            width = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, max(1, len(config.labels)))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] pixels in [0, 1] → the last feature map [N, dim, h, w]."""
        return self.body((images - self.config.mean) / self.config.std)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] pixels in [0, 1] → [N, dim] (max over the last feature map)."""
        return self.feature_map(images).amax(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Label logits [N, len(labels)]."""
        return self.head(self.features(images))


def save_object_net(net: ObjectNet, folder: Path, extra: dict | None = None) -> None:
    """Write `folder/config.json` and `folder/model.safetensors` (the folder must not hold others)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, **asdict(net.config), **(extra or {})}
    (folder / CONFIG_FILE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}, str(folder / WEIGHTS_FILE))


def load_object_net(folder: str | Path) -> ObjectNet:
    """The network in `folder`, in eval mode on the CPU."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if folder.name == SYNTHETIC_OBJECTS or not folder.is_dir():
        hint = ("`tvr pretrain --objects` builds it (and `tvr train` does on first use)" if folder.name.startswith(SYNTHETIC_OBJECTS)
                else "expected a folder written by `tvr pretrain --objects`")
        raise TvrError(f"object network {folder}: not found; {hint}")
    try:
        doc = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TvrError(f"{folder / CONFIG_FILE}: not a readable object-network config ({exc})") from None
    if doc.get("format") != FORMAT:
        raise TvrError(f"{folder / CONFIG_FILE}: format {doc.get('format')!r}, expected {FORMAT!r}")
    fields = {f: doc[f] for f in ObjectNetConfig.__dataclass_fields__ if f in doc}
    for key in ("widths", "strides", "labels"):
        if key in fields:
            fields[key] = tuple(fields[key])
    try:
        net = ObjectNet(ObjectNetConfig(**fields))
    except (TypeError, ValueError) as exc:
        raise TvrError(f"{folder / CONFIG_FILE}: {exc}") from None
    try:
        net.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except Exception as exc:  # missing, not safetensors, or tensors of other shapes
        raise TvrError(f"{folder / WEIGHTS_FILE}: not weights of this network ({str(exc).splitlines()[0]})") from None
    return net.eval()


@dataclass(frozen=True)
class ObjectsConfig:
    weights: str = SYNTHETIC_OBJECTS  # a folder written by `tvr pretrain --objects`
    num_frames: int = 8
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.batch_size < 1:
            raise ValueError("num_frames and batch_size must be ≥ 1")


@VIDEO_ENCODERS.register("objects")
class ObjectsEncoder(VideoEncoder):
    """Per-frame pooled features of an object-naming CNN (see `tvr pretrain --objects`)."""

    name: ClassVar[str] = "objects"
    config_cls: ClassVar[type] = ObjectsConfig
    outputs: ClassVar[tuple[str, ...]] = ("objects [T,D]", "objects_timestamps [T]", "timestamps [T]")

    def __init__(self, config: ObjectsConfig) -> None:
        from tvr.encoders.clip import fingerprint

        self.config = config
        self.net = load_object_net(config.weights)
        self.feature_dim = self.net.config.dim
        weights = Path(config.weights) / WEIGHTS_FILE
        self._version = f"objects-v1-{fingerprint(weights)}-n{config.num_frames}-s{self.net.config.image_size}"

    @property
    def version(self) -> str:
        return self._version

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(num_frames=self.config.num_frames, size=self.net.config.image_size)

    def encode(self, videos: Sequence[DecodedVideo]) -> list[dict[str, np.ndarray]]:
        counts = [len(v.frames) for v in videos]
        frames = [frames_to_unit(np.asarray(v.frames), self.net.config.image_size) for v in videos if len(v.frames)]
        pixels = torch.cat(frames) if frames else torch.zeros(0, 3, self.net.config.image_size, self.net.config.image_size)
        with torch.inference_mode():
            feats = [self.net.features(pixels[i:i + self.config.batch_size]) for i in range(0, len(pixels), self.config.batch_size)]
        all_feats = torch.cat(feats).numpy() if feats else np.zeros((0, self.feature_dim), np.float32)
        results, start = [], 0
        for video, n in zip(videos, counts, strict=True):
            times = np.asarray(video.timestamps_s, dtype=np.float32)
            results.append({"objects": all_feats[start:start + n].astype(np.float32), "objects_timestamps": times, "timestamps": times})
            start += n
        return results
