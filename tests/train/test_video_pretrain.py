"""`train.init`: fine-tuning from a model pretrained on synthetic videos (built once, cached, only its
weights kept) or from a user's earlier run; wrong runs are refused with the tensor or method named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_testlib import tiny_world

from tvr.errors import TvrError
from tvr.models.registry import build, load_model, make_config
from tvr.train.presets import TrainConfig
from tvr.train.pretrain import CACHE_ENV, SYNTHETIC_BACKBONE, PretrainConfig, backbone_to_build, with_synthetic_backbone
from tvr.train.video_pretrain import (
    INFO_FILE,
    LATER_FIELDS,
    SYNTHETIC_VIDEOS,
    InitResult,
    init_spec,
    init_to_build,
    load_init,
    resolve_init,
)

ROOT = Path(__file__).resolve().parents[2]
METHOD = "clip4clip-meanp"
INIT = {"init": SYNTHETIC_VIDEOS, "init_videos": 12, "init_epochs": 2, "batch_size": 4, "workers": 1, "epochs": 1}


def tiny_model_config():
    return make_config(METHOD, {"num_frames": 4, "image_size": 32,
                                "backbone": {"embed_dim": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 1,
                                             "vision_heads": 2, "text_width": 32, "text_layers": 1, "text_heads": 2}})


def write_config(path: Path, **train) -> Path:
    path.write_text(json.dumps({"preset": "tiny", "train": {**INIT, **train}}))
    return path


def spec_of(cfg, train_cfg, backbone=PretrainConfig(), method=METHOD, preset="tiny"):
    return init_spec(method, preset, cfg, train_cfg, backbone)


def test_key_follows_the_pretraining_recipe_not_the_fine_tuning_run():
    cfg, base, backbone = tiny_model_config(), TrainConfig(**INIT), PretrainConfig()
    key = spec_of(cfg, base).key()
    # the fine-tuning run's own seed, lr, epochs and decode workers leave the pretrained model as it is
    for same in (replace(base, workers=7), replace(base, epochs=9), replace(base, seed=1), replace(base, lr=2e-3)):
        assert spec_of(cfg, same).key() == key
    assert spec_of(cfg, base).train.epochs == 2 and spec_of(cfg, base).train.init == ""
    for changed in (replace(base, init_videos=13), replace(base, init_epochs=3), replace(base, sound_negatives=1.0),
                    replace(base, order_streams=True), replace(base, init_seed=1)):
        assert spec_of(cfg, changed).key() != key
    # init_seed is a second build of the same recipe: only its seed moves, whatever the run's own seed
    other = spec_of(cfg, replace(base, init_seed=2, seed=5))
    assert (other.train.seed, spec_of(cfg, base).train.seed) == (2, 0)
    assert replace(other.train, seed=0, init_seed=0) == spec_of(cfg, base).train
    assert spec_of(cfg, replace(base, init_seed=2, seed=9, lr=1e-4)).key() == other.key() != spec_of(cfg, replace(base, init_seed=3)).key()
    assert spec_of(cfg, base, preset="cpu-small").key() != key  # another preset, another recipe
    assert spec_of(replace(cfg, num_frames=5), base).key() != key
    assert spec_of(cfg, base, method="clip4clip-seqtransf").key() != key
    assert spec_of(cfg, base, backbone=replace(backbone, steps=7)).key() != key


def test_fields_added_later_enter_the_key_only_when_set():
    """A field added to the model or training config after the key's format was fixed leaves the keys of
    recipes that do not set it as they were, so a machine's built models stay valid: this recipe's key
    is the one it had before `train.sound_negatives`, `train.order_streams` and MMT's `text_head_layers` existed."""
    spec = spec_of(tiny_model_config(), TrainConfig(**INIT), backbone=PretrainConfig(distill=0.0))  # the backbone then
    assert spec.key() == "7c29b72c94"
    mmt = spec_of(make_config("mmt", {"experts": ["motion", "audio"]}), TrainConfig(**INIT), method="mmt")
    assert replace(mmt, model=replace(mmt.model, text_head_layers=1)).key() != mmt.key()
    assert set(LATER_FIELDS["model"]) <= set(mmt.model.__dataclass_fields__)
    assert set(LATER_FIELDS["train"]) <= set(TrainConfig.__dataclass_fields__)
    # a soup's members share the one pretrained start: the recipe's soup and split seed stay out of its key
    souped = replace(TrainConfig(**INIT), soup=({}, {"seed_offset": 1}), split_seed=4)
    assert spec_of(tiny_model_config(), souped, backbone=PretrainConfig(distill=0.0)).key() == spec.key()


def test_a_model_that_never_builds_its_backbone_neither_builds_it_nor_keys_on_it(tmp_path, monkeypatch):
    """MMT without its appearance expert carries the preset's backbone name but never reads it: training
    it must not spend the backbone's build, and its pretrained start must not depend on that recipe."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # an empty cache: reading the backbone would build it
    named = {"backbone": {"pretrained": SYNTHETIC_BACKBONE}}
    without = make_config("mmt", {"experts": ["motion", "audio"], **named})
    reading = make_config("mmt", {"experts": ["appearance", "motion", "audio"], **named})
    assert backbone_to_build(reading, PretrainConfig()) and not backbone_to_build(without, PretrainConfig())
    assert with_synthetic_backbone(without, PretrainConfig()) is without and not any(tmp_path.iterdir())
    train, other = TrainConfig(**INIT), replace(PretrainConfig(), steps=7)
    assert spec_of(without, train, method="mmt").key() == spec_of(without, train, other, method="mmt").key()
    assert spec_of(reading, train, method="mmt").key() != spec_of(reading, train, other, method="mmt").key()


def test_training_mmt_without_appearance_builds_no_backbone(run_cli, tmp_path, tmp_path_factory, monkeypatch):
    """End to end: the run trains, no backbone is built into the (empty) cache, none is recorded."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    world = tiny_world(tmp_path_factory) / "w"
    config = tmp_path / "c.json"
    tiny_recipe = {"steps": 2, "batch_size": 4, "warmup_steps": 1, "image_size": 32, "patch_size": 8, "vision_width": 32,
                   "vision_layers": 1, "vision_heads": 2, "text_width": 32, "text_layers": 1, "text_heads": 2, "embed_dim": 32}
    # a tiny recipe, so that a regression builds a backbone in seconds and fails, not in 18 minutes
    config.write_text(json.dumps({"preset": "tiny", "model": {"experts": ["motion", "audio"], "backbone": {"pretrained": SYNTHETIC_BACKBONE}},
                                  "pretrain": tiny_recipe, "train": {"epochs": 1, "batch_size": 4, "workers": 1}}))
    r = run_cli("train", world / "train.jsonl", "--method", "mmt", "--out", tmp_path / "run", "--config", config, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert not (cache / "pretrained").exists() or not any((cache / "pretrained").iterdir())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "pretrain" not in saved["training"] and saved["config"]["experts"] == ["motion", "audio"]


def test_the_default_presets_keep_the_pretrained_folders_built_before():
    """The keys of the cpu-small methods' synthetic-video pretraining, pinned: a change to them makes
    every machine rebuild 11–19 minutes of pretraining per method, so it must be deliberate. The
    defaults are those the benchmark's distilled-backbone rows were measured with; the plain backbone
    (the default before) keeps its folders."""
    from tvr.train.video_pretrain import method_init

    methods = ("mmt", "clip4clip-seqtransf", "ts2net", "prost")
    keys = {m: method_init(m).key() for m in methods}
    assert keys == {"mmt": "d5e62600e7", "clip4clip-seqtransf": "b16add8d68", "ts2net": "f559bf316a", "prost": "668d153f27"}
    plain = {m: method_init(m, ROOT / "bench" / "configs" / "plain_backbone.json").key() for m in methods}
    assert plain == {"mmt": "e4999d7bd6", "clip4clip-seqtransf": "91499fed82", "ts2net": "10fd56843a", "prost": "cae2cb9b90"}


def test_train_builds_the_pretrained_model_once_and_starts_from_its_weights(run_cli, tmp_path, tmp_path_factory):
    world = tiny_world(tmp_path_factory) / "w"
    config = write_config(tmp_path / "c.json")
    first, second = tmp_path / "first", tmp_path / "second"
    r = run_cli("train", world / "train.jsonl", "--method", METHOD, "--out", first, "--config", config, "--quiet")
    assert r.exit_code == 0, r.stderr
    init = Path(json.loads((first / "config.json").read_text())["training"]["init"]["path"])
    assert sorted(p.name for p in init.iterdir()) == sorted(["config.json", "model.safetensors", "metrics.jsonl", INFO_FILE])
    info = json.loads((init / INFO_FILE).read_text())
    assert info["videos"] == 12 and info["epochs"] == 2 and info["method"] == METHOD
    assert not any(p.name.endswith(".partial") for p in init.parent.iterdir())  # the rendered world is gone
    pretrained = load_file(str(init / "model.safetensors"))
    stamp = (init / "model.safetensors").stat().st_mtime_ns

    # a second run reuses the folder, and its weights before fine-tuning are exactly the pretrained ones
    r = run_cli("train", world / "train.jsonl", "--method", METHOD, "--out", second, "--config", config, "--quiet")
    assert r.exit_code == 0, r.stderr
    assert (init / "model.safetensors").stat().st_mtime_ns == stamp
    saved = json.loads((second / "config.json").read_text())
    assert saved["training"]["init"]["path"] == str(init)
    torch.manual_seed(0)
    model = build(METHOD, make_config(METHOD, saved["config"]))
    assert any(not torch.equal(v, pretrained[k]) for k, v in model.state_dict().items())
    load_init(model, InitResult(init, built=False, wall_s=0.0, cpu_s=0.0))
    for name, value in model.state_dict().items():
        assert torch.equal(value, pretrained[name]), name
    tuned = load_model(second).state_dict()
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in pretrained)  # and fine-tuning moved them


def test_the_pretraining_is_deterministic(tmp_path, monkeypatch):
    spec = spec_of(tiny_model_config(), TrainConfig(**INIT))
    built = []
    for name in ("a", "b"):
        monkeypatch.setenv("TVR_CACHE_DIR", str(tmp_path / name))
        assert init_to_build(SYNTHETIC_VIDEOS, spec) and not init_to_build("", spec)
        result = resolve_init(SYNTHETIC_VIDEOS, spec, workers=1, progress=False)
        assert result.built and result.path == spec.folder() and str(tmp_path / name) in str(result.path)
        assert not init_to_build(SYNTHETIC_VIDEOS, spec)
        built.append(load_file(str(result.path / "model.safetensors")))
    assert built[0].keys() == built[1].keys()
    for k in built[0]:
        assert torch.equal(built[0][k], built[1][k]), k


def test_init_from_a_user_run_and_the_refusals(run_cli, tmp_path, tmp_path_factory):
    world = tiny_world(tmp_path_factory) / "w"
    base = tmp_path / "base"
    config = tmp_path / "plain.json"
    config.write_text(json.dumps({"preset": "tiny", "train": {"batch_size": 4, "workers": 1, "epochs": 1}}))
    assert run_cli("train", world / "train.jsonl", "--method", METHOD, "--out", base, "--config", config,
                   "--quiet").exit_code == 0
    tuned = tmp_path / "tuned"
    r = run_cli("train", world / "train.jsonl", "--method", METHOD, "--out", tuned, "--quiet",
                "--config", write_config(tmp_path / "from_run.json", init=str(base)))
    assert r.exit_code == 0, r.stderr
    assert json.loads((tuned / "config.json").read_text())["training"]["init"] == {"path": str(base)}

    r = run_cli("train", world / "train.jsonl", "--method", "clip4clip-seqtransf", "--out", tmp_path / "other",
                "--quiet", "--config", write_config(tmp_path / "wrong_method.json", init=str(base)))
    assert r.exit_code == 2 and "is a 'clip4clip-meanp' model, expected 'clip4clip-seqtransf'" in r.stderr

    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({"preset": "tiny", "model": {"backbone": {"embed_dim": 48}},
                                "train": {**INIT, "init": str(base)}}))
    r = run_cli("train", world / "train.jsonl", "--method", METHOD, "--out", tmp_path / "wide", "--quiet", "--config", wide)
    assert r.exit_code == 2 and "has shape" in r.stderr and "train.init" in r.stderr

    r = run_cli("train", world / "train.jsonl", "--method", METHOD, "--out", tmp_path / "nowhere", "--quiet",
                "--config", write_config(tmp_path / "missing.json", init=str(tmp_path / "no-such-run")))
    assert r.exit_code == 2 and "no-such-run is not a finished tvr run" in r.stderr


def test_out_of_range_recipe_is_refused():
    with pytest.raises(ValueError, match="init_videos"):
        TrainConfig(init_videos=1)
    with pytest.raises(ValueError, match="init_epochs"):
        TrainConfig(init_epochs=0)
    with pytest.raises(TvrError, match="not a finished tvr run"):
        resolve_init("/nonexistent", spec_of(tiny_model_config(), TrainConfig()), progress=False)


def test_pretrain_cli_builds_a_method_where_train_finds_it(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TVR_CACHE_DIR", str(tmp_path / "cache"))  # the other tests built this recipe already
    config = write_config(tmp_path / "c.json")
    r = run_cli("pretrain", "--method", METHOD, "--config", config, "--where", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["built"] is False
    target = Path(json.loads(r.stdout)["path"])
    r = run_cli("pretrain", "--method", METHOD, "--config", config, "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["built"] is True and Path(doc["path"]) == target and doc["info"]["videos"] == 12
    r = run_cli("pretrain", "--method", METHOD, "--config", config, "--json", "--quiet")
    assert json.loads(r.stdout)["built"] is False
    r = run_cli("pretrain", "--method", METHOD, "--steps", "3")
    assert r.exit_code == 2 and "--steps is not taken with --method" in r.stderr
    r = run_cli("pretrain", "--method", "crosstvr")
    assert r.exit_code == 2 and "not pretrained on videos" in r.stderr
