"""`tvr pretrain --objects`: the `objects` expert's CNN — a folder that reads back to the same network,
an exact resume after a crash, a network that learns to name shapes, the encoder's features, and the
synthetic name resolved by `tvr train` for MMT."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from train_testlib import tiny_world

from tvr.encoders.objects import ObjectsConfig, ObjectsEncoder, load_object_net
from tvr.errors import TvrError
from tvr.train import object_pretrain as OP
from tvr.train.object_pretrain import INFO_FILE, ObjectPretrainConfig, ensure_objects, objects_dir

TINY = ObjectPretrainConfig(steps=4, batch_size=8, warmup_steps=1, image_size=32, widths=(8, 12), strides=(2, 2),
                            checkpoint_every=2)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_folder_reads_back_to_the_trained_network(tmp_path):
    out = tmp_path / "objects"
    result = ensure_objects(TINY, out=out, progress=False)
    assert result.built
    info = json.loads((out / INFO_FILE).read_text())
    assert info["config"] == json.loads(json.dumps(asdict(TINY))) and info["images_seen"] == 32
    assert set(info["heldout_stills"]) == {"shape_small", "shape_large", "all_labels"}
    net = load_object_net(out)
    assert net.config.image_size == 32 and net.config.dim == 12 and len(net.config.labels) == 48
    assert net.config.labels[0] == "red circle small"
    # the same weights as a network rebuilt from the build's last checkpointed state would have
    pixels, _ = OP.step_batch(TINY, 0)
    again = load_object_net(out)
    with torch.no_grad():
        assert torch.equal(net(pixels), again(pixels))
    assert not ensure_objects(TINY, out=out, progress=False).built  # reused


def test_a_crashed_build_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = replace(TINY, steps=6)
    ensure_objects(cfg, out=tmp_path / "whole", progress=False)
    real = OP.step_batch

    def crash_at_step_5(c, step):
        if step == 5:
            raise KeyboardInterrupt
        return real(c, step)

    monkeypatch.setattr(OP, "step_batch", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        ensure_objects(cfg, out=tmp_path / "cut", progress=False)
    state = tmp_path / "cut.partial" / "state.json"
    assert json.loads(state.read_text())["step"] == 4 and not (tmp_path / "cut").exists()
    monkeypatch.setattr(OP, "step_batch", real)
    ensure_objects(cfg, out=tmp_path / "cut", progress=False)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # BatchNorm's running statistics included
    assert not state.parent.exists()


def test_label_loss_fits_one_batch():
    """The fast twin of the learning test below: the loss and the labels agree well enough to fit."""
    from tvr.encoders.objects import ObjectNet

    torch.manual_seed(0)
    net = ObjectNet(TINY.net_config()).train()
    pixels, targets = OP.step_batch(replace(TINY, batch_size=16), 0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    first = float(OP.label_loss(net, pixels, targets).detach())
    for _ in range(60):
        loss = OP.label_loss(net, pixels, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < first / 4


@pytest.mark.slow
def test_a_short_build_names_shapes_far_above_chance(tmp_path):
    cfg = ObjectPretrainConfig(steps=400, batch_size=64, image_size=32, widths=(16, 32, 48), strides=(1, 2, 2),
                               beside=0.0, warmup_steps=20, lr=3e-3)
    net = load_object_net(ensure_objects(cfg, out=tmp_path / "o", progress=False).path)
    held = OP.heldout_accuracy(net, cfg)
    assert held["shape_large"] > 60.0, held  # chance 25


def test_heldout_shape_check_counts_the_right_shape_against_the_other_three():
    from tvr.synth.stills import ATTRIBUTES, StillSampler

    class Oracle(torch.nn.Module):  # knows each held-out still's labels: every check is right
        def __init__(self, targets):
            super().__init__()
            self.targets = targets

        def forward(self, pixels):
            return self.targets * 10 - 5

    cfg = replace(TINY, beside=0.5)
    stills = StillSampler([cfg.seed, -1 % 2**32], cfg.image_size, cfg.beside).stills(256)
    from tvr.synth.stills import attribute_targets

    targets = torch.from_numpy(attribute_targets(stills))
    assert OP.heldout_accuracy(Oracle(targets), cfg) == {"shape_small": 100.0, "shape_large": 100.0, "all_labels": 100.0}
    assert targets.shape[1] == len(ATTRIBUTES)
    flipped = OP.heldout_accuracy(Oracle(1 - targets), cfg)  # every present label scored lowest
    assert flipped["shape_small"] == flipped["shape_large"] == 0.0 and flipped["all_labels"] == 0.0


def test_encoder_gives_the_networks_pooled_features_per_frame(tmp_path):
    from tvr.io.decoded import DecodedVideo

    out = ensure_objects(TINY, out=tmp_path / "o", progress=False).path
    encoder = ObjectsEncoder(ObjectsConfig(weights=str(out), num_frames=3))
    assert encoder.feature_dim == 12 and encoder.decode_spec().size == 32 and encoder.decode_spec().num_frames == 3
    rng = np.random.default_rng(0)
    videos = [DecodedVideo(frames=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), timestamps_s=np.arange(n) * 0.5, duration_s=n * 0.5)
              for n in (3, 2)]
    got = encoder.encode(videos)
    net = load_object_net(out)
    for video, res in zip(videos, got, strict=True):
        pixels = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            want = net.features(pixels).numpy()
        np.testing.assert_allclose(res["objects"], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(res["objects_timestamps"], np.asarray(video.timestamps_s, dtype=np.float32))
    other = ensure_objects(replace(TINY, seed=1), out=tmp_path / "o1", progress=False).path
    assert ObjectsEncoder(ObjectsConfig(weights=str(other))).version != encoder.version  # new weights, new features


def test_unbuilt_or_foreign_folders_are_refused_with_one_line(tmp_path):
    with pytest.raises(TvrError, match="tvr pretrain --objects"):
        load_object_net("synthetic-objects")
    (tmp_path / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(TvrError, match="format"):
        load_object_net(tmp_path)
    built = ensure_objects(TINY, out=tmp_path / "o", progress=False).path
    (built / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(TvrError, match="model.safetensors: not weights of this network"):
        load_object_net(built)
    doc = json.loads((built / "config.json").read_text())
    (built / "config.json").write_text(json.dumps({**doc, "strides": [3, 1]}))
    with pytest.raises(TvrError, match="strides"):
        load_object_net(built)


def test_cli_builds_where_and_refuses_backbone_flags(run_cli, tmp_path):
    out = tmp_path / "o"
    r = run_cli("pretrain", "--objects", "--out", out, "--steps", "2", "--batch-size", "4", "--image-size", "32", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["built"] and doc["info"]["steps"] == 2 and load_object_net(out).config.image_size == 32
    r = run_cli("pretrain", "--objects", "--out", out, "--where")
    assert r.exit_code == 0 and "(built)" in r.stdout
    r = run_cli("pretrain", "--objects", "--patch-size", "8")
    assert r.exit_code == 2 and "--patch-size is not taken with --objects" in r.stderr
    r = run_cli("pretrain", "--objects", "--beside", "2")
    assert r.exit_code == 2 and "--beside" in r.stderr


def test_train_resolves_the_synthetic_name_for_an_mmt_objects_expert(run_cli, tmp_path, tmp_path_factory, monkeypatch):
    """The config file's `objects` recipe, over the default one, builds the network the run names."""
    monkeypatch.setattr(OP, "default_config", lambda: TINY)  # the default recipe, at test size
    world = tiny_world(tmp_path_factory)
    asked = replace(TINY, seed=1, min_lr_ratio=0.05)
    config = {"preset": "tiny", "model": {"experts": ["appearance", "audio", "objects"]},
              "train": {"epochs": 1, "batch_size": 4, "workers": 1}, "objects": {"seed": 1, "min_lr_ratio": 0.05}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    r = run_cli("train", world / "w" / "all.jsonl", "--method", "mmt", "--out", run, "--config", tmp_path / "c.json", "--quiet")
    assert r.exit_code == 0, r.stderr
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["objects"] == str(objects_dir(asked)) and saved["experts"] == ["appearance", "audio", "objects"]
    assert (objects_dir(asked) / INFO_FILE).is_file()  # built under the hash of the asked recipe
    assert not objects_dir(TINY).exists()  # the default recipe was not built
    from tvr.models.registry import load_model

    model = load_model(run)
    assert model.expert_proj["objects"].in_features == 12


def test_the_video_pretraining_key_follows_the_objects_recipe_only_where_it_is_used(monkeypatch):
    from tvr.models.registry import make_config
    from tvr.train import video_pretrain as VP
    from tvr.train.presets import TrainConfig
    from tvr.train.pretrain import PretrainConfig

    def key(experts, backbone=PretrainConfig(distill=0.0)):
        return VP.init_spec("mmt", "tiny", make_config("mmt", {"experts": experts}), TrainConfig(), backbone).key()

    with_objects, without = key(["appearance", "audio", "objects"]), key(["appearance", "audio"])
    distilled = key(["appearance", "audio"], PretrainConfig())
    monkeypatch.setattr(OP, "default_config", lambda: TINY)  # another default recipe for the network
    assert key(["appearance", "audio", "objects"]) != with_objects  # a new network, a new pretrained MMT
    assert key(["appearance", "audio"]) == without  # nothing reads the network
    assert key(["appearance", "audio"], PretrainConfig()) != distilled  # the default backbone learned from it


def test_a_config_file_overrides_the_objects_recipe_field_by_field(tmp_path):
    from tvr.train.presets import resolve

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"objects": {"warmup_steps": 30, "min_lr_ratio": 0.05}}))
    objects = resolve(config, "mmt").objects
    assert objects == replace(OP.default_config(), warmup_steps=30, min_lr_ratio=0.05)
    assert resolve(None, "mmt").objects == OP.default_config()
    for doc, message in [({"objects": {"warmup": 3}}, "objects: unknown field 'warmup'"),
                         ({"objects": {"steps": 0}}, "objects: steps must be ≥ 1"),
                         ({"objects": {"lr": "x"}}, "objects.lr: expected a finite number"),
                         ({"objects": {}, "object": {}}, "unknown key 'object'")]:
        config.write_text(json.dumps(doc))
        with pytest.raises(TvrError, match=re.escape(message)):
            resolve(config, "mmt")


def test_the_video_pretraining_key_follows_the_config_files_objects_recipe(tmp_path):
    """The default recipe spelled out keeps the default key (and the machine's built MMT); another
    recipe makes another pretrained MMT, but only for a model with the objects expert."""
    from tvr.train.video_pretrain import method_init

    def key(doc):
        (tmp_path / "c.json").write_text(json.dumps(doc))
        return method_init("mmt", tmp_path / "c.json").key()

    default = method_init("mmt").key()
    assert key({"objects": asdict(OP.default_config())}) == default
    assert key({"objects": {"min_lr_ratio": 0.05}}) != default
    three = {"model": {"experts": ["appearance", "motion", "audio"]}}
    assert key({**three, "objects": {"min_lr_ratio": 0.05}}) == key(three)
