"""`tvr pretrain`: a Hugging Face CLIPModel folder that transformers and tvr read alike, an exact
resume after a kill, one build when two processes race, and the synthetic name in `tvr train`."""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from train_testlib import start_child, tiny_world

from tvr.train.pretrain import INFO_FILE, PretrainConfig, backbone_dir, ensure_backbone

TINY = PretrainConfig(steps=4, batch_size=8, warmup_steps=1, image_size=32, patch_size=8, vision_width=32,
                      vision_layers=1, vision_heads=2, text_width=32, text_layers=1, text_heads=2, embed_dim=16,
                      context_length=24, checkpoint_every=2, distill=0.0)  # no teacher to build: the distillation tests add one


# the distillation teacher's recipe in tests: the objects network of `object_pretrain` at two steps, two
# layers (a stride-4 map: 8 × 8 at 32 px, pooled to TINY's 4 × 4 patch grid)
TINY_TEACHER_FIELDS = {"steps": 2, "batch_size": 4, "warmup_steps": 1, "widths": (4, 8), "strides": (2, 2)}


def build_in_child(cfg: PretrainConfig, out: Path, result: Path) -> multiprocessing.Process:
    """Build in a process of its own (forked from the test library's server: no imports to pay), one
    thread, TINY_TEACHER_FIELDS's objects network; `{"built": …}` goes to `result`."""
    return start_child(_build, asdict(cfg), str(out), str(result))


def _build(cfg: dict, out: str, result: str) -> None:
    import tvr.train.object_pretrain as O

    default = O.default_config
    O.default_config = lambda: replace(default(), **TINY_TEACHER_FIELDS)
    built = build_in_this_process(PretrainConfig(**cfg), Path(out))
    Path(result).write_text(json.dumps({"built": built}))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_folder_loads_in_transformers_and_tvr_alike(tmp_path):
    from transformers import AutoTokenizer, CLIPModel

    from tvr.encoders.clip import load_clip

    out = tmp_path / "clip"
    result = ensure_backbone(TINY, out=out, progress=False)
    assert result.built and result.steps == 4
    info = json.loads((out / INFO_FILE).read_text())
    assert info["config"] == asdict(TINY) and info["images_seen"] == 32
    hf = CLIPModel.from_pretrained(str(out), local_files_only=True).eval()
    ours, tokenizer, pre = load_clip(out)
    assert pre.image_size == 32
    images = torch.randn(3, 3, 32, 32)
    captions = ["a red circle on the left", "two shapes: a tiny violet cross and a big box", "a crimson sphere"]
    ids, mask = tokenizer(captions, TINY.context_length)
    hf_ids = AutoTokenizer.from_pretrained(str(out))(captions, padding="max_length", max_length=TINY.context_length,
                                                     return_tensors="pt")["input_ids"]
    assert torch.equal(hf_ids, ids)  # the folder's tokenizer is the one tvr uses
    with torch.no_grad():
        np.testing.assert_allclose(hf.get_image_features(pixel_values=images).pooler_output.numpy(),
                                   ours.encode_image(images).numpy(), atol=1e-5)
        np.testing.assert_allclose(hf.get_text_features(input_ids=ids, attention_mask=mask.long()).pooler_output.numpy(),
                                   ours.encode_text(ids, mask).numpy(), atol=1e-5)
    # the second call reuses the folder
    again = ensure_backbone(TINY, out=out, progress=False)
    assert not again.built and again.steps == 4


def test_token_embeddings_come_from_minilm_and_stay_frozen(tmp_path):
    from tvr.train.pretrain import minilm_token_embedding, reduce_width

    out = tmp_path / "clip"
    ensure_backbone(TINY, out=out, progress=False)
    start = reduce_width(minilm_token_embedding()[0], TINY.text_width)
    saved = weights(out)["text_model.embeddings.token_embedding.weight"]
    assert torch.equal(saved, start)
    # synonyms the stills never use stay nearer their meaning than an unrelated word
    from tvr.encoders.tokenizer import HFTokenizer

    tok = HFTokenizer(out)
    vec = {w: saved[tok.encode_ids(w)[1]] for w in ("red", "crimson", "ball", "sphere", "train")}
    cos = torch.nn.functional.cosine_similarity
    assert cos(vec["red"], vec["crimson"], dim=0) > cos(vec["red"], vec["train"], dim=0)


def build_in_this_process(cfg: PretrainConfig, out: Path) -> bool:
    """`build_in_child`'s build (one thread; TINY_TEACHER_FIELDS's objects network, which the caller patches
    in) in this process; whether it built (False: the folder was there already)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ensure_backbone(cfg, out=out, progress=False).built
    finally:
        torch.set_num_threads(threads)


def test_killed_build_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import tvr.train.object_pretrain as O

    default = O.default_config
    monkeypatch.setattr(O, "default_config", lambda: replace(default(), **TINY_TEACHER_FIELDS))  # as build_in_child does
    cfg = PretrainConfig(**{**asdict(TINY), "steps": 6, "attributes": 1.0, "distill": 1.0})  # both heads resume too
    whole = tmp_path / "whole"
    build_in_this_process(cfg, whole)

    cut = tmp_path / "cut"
    p = build_in_child(cfg, cut, tmp_path / "result.json")  # killed, so a process of its own
    state = cut.parent / f"{cut.name}.partial" / "state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and p.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    p.kill()  # SIGKILL
    p.join()
    assert not (cut / INFO_FILE).exists(), "the build finished before it could be killed"
    assert json.loads(state.read_text())["step"] in (2, 4)
    build_in_this_process(cfg, cut)  # the resume: the killed process's state, read by another
    a, b = weights(whole), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not state.parent.exists()  # the work folder is cleaned up


def test_a_builds_recorded_cost_leaves_out_its_teachers_build(tmp_path, monkeypatch):
    import tvr.train.pretrain as P
    from tvr.encoders.objects import ObjectNet, ObjectNetConfig

    offset = [0.0]  # the clocks jump by an hour while the teacher is made

    def slow_teacher(cfg, progress=True):  # a stand-in for a teacher built in the same call
        offset[0] += 3600.0
        return ObjectNet(ObjectNetConfig(image_size=32, widths=(4, 8), strides=(2, 2), labels=("a",))).eval()

    for name in ("monotonic", "process_time"):
        monkeypatch.setattr(time, name, lambda real=getattr(time, name): real() + offset[0])
    monkeypatch.setattr(P, "distill_teacher", slow_teacher)
    result = ensure_backbone(PretrainConfig(**{**asdict(TINY), "distill": 1.0}), out=tmp_path / "clip", progress=False)
    info = json.loads((result.path / INFO_FILE).read_text())
    assert info["build_wall_s"] < 3600 and info["build_cpu_s"] < 3600  # the backbone's own steps only
    assert result.wall_s >= 3600 and result.cpu_s >= 3600  # what the call took, its teacher included


def test_two_racing_builders_build_once(tmp_path):
    out = tmp_path / "clip"
    procs = [build_in_child(TINY, out, tmp_path / f"result-{i}.json") for i in range(2)]
    results = []
    for i, p in enumerate(procs):
        p.join(240)
        assert p.exitcode == 0
        results.append(json.loads((tmp_path / f"result-{i}.json").read_text())["built"])
    assert sorted(results) == [False, True]
    assert (out / INFO_FILE).is_file()


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TVR_CACHE_DIR", str(tmp_path / "cache"))
    assert backbone_dir(TINY).parent == tmp_path / "cache" / "pretrained"
    assert backbone_dir(TINY) != backbone_dir(PretrainConfig(**{**asdict(TINY), "seed": 1}))


def test_cli_builds_reuses_and_refuses_bad_values(run_cli, tmp_path):
    out = tmp_path / "clip"
    args = ("pretrain", "--out", out, "--steps", "2", "--batch-size", "4", "--image-size", "32", "--patch-size", "16",
            "--distill", "0")
    r = run_cli(*args, "--json", "--quiet")
    assert r.exit_code == 0 and r.stderr == "", r.stderr  # quiet: not even transformers' bar for writing the weights
    doc = json.loads(r.stdout)
    assert doc["built"] and doc["steps"] == 2 and doc["info"]["config"]["image_size"] == 32
    r = run_cli(*args, "--json", "--quiet")
    assert r.exit_code == 0 and not json.loads(r.stdout)["built"]
    r = run_cli(*args, "--json", "--quiet", "--force")
    assert r.exit_code == 0 and json.loads(r.stdout)["built"]
    r = run_cli("pretrain", "--out", tmp_path / "x", "--steps", "0")
    assert r.exit_code == 2 and "--steps" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for flag in ("--foils", "--beside"):
        r = run_cli("pretrain", "--out", tmp_path / "x", flag, "1.5")
        assert r.exit_code == 2 and flag in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("pretrain", "--out", tmp_path / "x", "--image-size", "40", "--patch-size", "16")
    assert r.exit_code == 2 and "--image-size" in r.stderr
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "f").write_text("x")
    r = run_cli("pretrain", "--out", tmp_path / "junk", "--steps", "1", "--distill", "0")
    assert r.exit_code == 2 and "--force" in r.stderr


def test_train_fine_tunes_from_the_synthetic_name(run_cli, tmp_path, tmp_path_factory):
    tiny_world_dir = tiny_world(tmp_path_factory)
    config = {"preset": "tiny", "model": {"backbone": {"pretrained": "synthetic-clip", "freeze_token_embedding": True}},
              "pretrain": asdict(TINY), "train": {"epochs": 1, "batch_size": 4, "workers": 1, "hard_negatives": 0.5}}
    (tmp_path / "c.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    r = run_cli("train", tiny_world_dir / "w" / "all.jsonl", "--method", "clip4clip-meanp", "--out", run,
                "--config", tmp_path / "c.json", "--quiet")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((run / "config.json").read_text())
    saved = doc["config"]
    assert saved["backbone"]["pretrained"] == str(backbone_dir(TINY))  # the name became the cache folder
    assert doc["training"]["pretrain"] == asdict(TINY)  # the recipe, to rebuild the folder elsewhere
    assert saved["image_size"] == 32 and saved["backbone"]["text_width"] == 32
    from tvr.models.registry import load_model

    model = load_model(run)
    start = weights(backbone_dir(TINY))["text_model.embeddings.token_embedding.weight"]
    assert torch.equal(model.backbone.text.token_embedding.weight.detach(), start)  # frozen through fine-tuning


def test_contrastive_loss_takes_foils_as_image_to_text_negatives_only():
    import math

    from tvr.train.pretrain import contrastive_loss

    class Towers(torch.nn.Module):  # images are their vectors; a caption's vector is its first token's row
        def __init__(self):
            super().__init__()
            self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
            self.table = torch.randn(20, 5, generator=torch.Generator().manual_seed(0))

        def encode_image(self, images):
            return images

        def encode_text(self, ids, mask):
            return self.table[ids[:, 0]]

    model = Towers()
    images = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[1, 0], [2, 0], [1, 0], [7, 0], [9, 0]])  # captions 0 and 2 are the same; 3, 4 are foils
    mask = torch.ones_like(ids, dtype=torch.bool)
    img = torch.nn.functional.normalize(images, dim=-1)
    txt = torch.nn.functional.normalize(model.table[ids[:, 0]], dim=-1)
    s = 10.0 * img @ txt.t()
    same_caption = {0: {2}, 2: {0}, 1: set()}
    i2t = -sum(s[i, i] - torch.logsumexp(torch.stack([s[i, j] for j in range(5) if j not in same_caption[i]]), 0)
               for i in range(3)) / 3
    t2i = -sum(s[i, i] - torch.logsumexp(torch.stack([s[j, i] for j in range(3) if j not in same_caption[i]]), 0)
               for i in range(3)) / 3
    assert torch.allclose(contrastive_loss(model, images, ids, mask), (i2t + t2i) / 2, atol=1e-6)
    without = contrastive_loss(model, images, ids[:3], mask[:3])
    assert without < contrastive_loss(model, images, ids, mask)  # the foils only add negatives


def test_foils_key_and_held_out_shape_check(tmp_path):
    plain = PretrainConfig(distill=0.0)  # the default until distillation: its built backbones keep their folder
    assert PretrainConfig(foils=0.0, distill=0.0).key() == plain.key() == "dec4921618"
    assert PretrainConfig().key() == "1cd4df0763"  # the default: distilled at weight 5
    for name in ("foils", "beside", "twins"):
        assert replace(plain, **{name: 0.0}).key() == plain.key() != replace(plain, **{name: 0.5}).key(), name
    with pytest.raises(ValueError, match="twins"):
        PretrainConfig(twins=1.5)
    assert replace(plain, attributes=0.0).key() == plain.key() != replace(plain, attributes=1.0).key()
    assert plain.key() != PretrainConfig(distill=1.0).key() != PretrainConfig().key()
    cfg = PretrainConfig(**{**asdict(TINY), "steps": 2, "foils": 0.5})
    out = tmp_path / "clip"
    ensure_backbone(cfg, out=out, progress=False)
    held = json.loads((out / INFO_FILE).read_text())["heldout_stills"]
    assert 0 <= held["shape_R@1_small"] <= 100 and 0 <= held["shape_R@1_large"] <= 100 and held["shape_chance"] == 25.0


def test_captions_encoded_by_length_match_one_padded_pass():
    from tvr.encoders.clip_model import ClipModel, TextConfig, VisionConfig
    from tvr.train.pretrain import encode_text_by_length

    torch.manual_seed(0)
    model = ClipModel(VisionConfig(image_size=16, patch_size=8, width=16, layers=1, heads=2, output_dim=8),
                      TextConfig(context_length=12, vocab_size=50, width=16, layers=2, heads=2, output_dim=8))
    lengths = torch.tensor([3, 12, 1, 7, 5, 9, 2, 12, 4])
    mask = torch.arange(12)[None, :] < lengths[:, None]
    ids = torch.randint(1, 50, (len(lengths), 12)).masked_fill(~mask, 0)
    seen = []
    hook = model.text.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    grouped = encode_text_by_length(model, ids, mask, groups=3)
    hook.remove()
    assert [tuple(s) for s in seen] == [(3, 3), (3, 7), (3, 12)]  # each run cut to its longest caption
    assert torch.allclose(grouped, model.encode_text(ids, mask), atol=1e-5)  # and in the order given
    assert torch.allclose(encode_text_by_length(model, ids[:2], mask[:2], groups=5), model.encode_text(ids[:2], mask[:2]),
                          atol=1e-5)


def test_a_step_with_twins_holds_the_pairs_and_leaves_room_for_foils():
    from tvr.encoders.frames import pixel_scale
    from tvr.synth.stills import StillSampler
    from tvr.train.pretrain import step_batch

    cfg = PretrainConfig(**{**asdict(TINY), "batch_size": 8, "twins": 0.5, "foils": 1.0})
    tokenizer = lambda texts, n: (texts, n)  # noqa: E731 - the step's captions, as handed to the tokenizer
    images, captions, _, targets = step_batch(cfg, 3, tokenizer, pixel_scale())
    want_px, want_caps, want_foils = StillSampler([cfg.seed, 3], cfg.image_size).batch_with_foils(8, 4, 2)
    assert images.shape == (8, 3, cfg.image_size, cfg.image_size)
    stills = StillSampler([cfg.seed, 3], cfg.image_size).stills(8, 4, 2)
    assert targets.sum(dim=1).tolist() == [len(s.objects) for s in stills]  # one label per object shown
    assert captions == want_caps + want_foils and len(want_foils) == 4  # 2 pairs, then 4 stills with foils


def test_attribute_loss_sums_binary_cross_entropy_over_attributes_and_trains_the_image_tower():
    from tvr.synth.stills import ATTRIBUTES
    from tvr.train.pretrain import attribute_head, attribute_loss, build_model

    cfg = PretrainConfig(**{**asdict(TINY), "attributes": 1.0})
    assert attribute_head(TINY) is None  # off by default
    model, head = build_model(cfg, torch.randn(50, 32)), attribute_head(cfg)
    images = torch.randn(2, 3, 32, 32)
    targets = torch.zeros(2, len(ATTRIBUTES))
    targets[0, 3] = targets[1, 7] = targets[1, 40] = 1.0
    logits = head(torch.nn.functional.normalize(model.encode_image(images), dim=-1)).detach()
    p = torch.sigmoid(logits)
    want = -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).sum(dim=1).mean()
    loss = attribute_loss(model, head, images, targets)
    assert torch.allclose(loss, want, atol=1e-6)
    loss.backward()
    assert model.visual.conv1.weight.grad.abs().sum() > 0  # the tower learns from it, not only the head


def test_distill_key_follows_the_teachers_recipe(monkeypatch):
    import tvr.train.object_pretrain as O

    before = PretrainConfig(distill=1.0).key()
    assert PretrainConfig(distill=1.0).teacher_recipe() == O.default_config()  # the CNN MMT reads, at 64 px
    monkeypatch.setattr(O, "default_config", lambda: replace(O.ObjectPretrainConfig(), steps=600))
    assert PretrainConfig(distill=1.0).key() != before  # a backbone distilled from another CNN is another folder
    assert PretrainConfig(distill=0.0).key() == "dec4921618"  # without distillation the teacher is no part of it


def test_teacher_steps_shorten_the_teacher_and_key_only_a_distilled_backbone():
    import tvr.train.object_pretrain as O

    default = PretrainConfig()
    assert PretrainConfig(teacher_steps=O.default_config().steps).key() == default.key() == "1cd4df0763"
    assert PretrainConfig(teacher_steps=600).key() == "396d4e12f3"  # the measured 600-step teacher's backbone
    short = PretrainConfig(teacher_steps=150).teacher_recipe()
    assert (short.steps, short.warmup_steps) == (150, 7)  # the default's share of warmup steps, 60 of 1,200
    assert replace(short, steps=1200, warmup_steps=60) == default.teacher_recipe()  # nothing else changes
    assert PretrainConfig(teacher_steps=150).key() != default.key()
    assert PretrainConfig(distill=0.0, teacher_steps=150).key() == "dec4921618"  # no teacher, no difference
    with pytest.raises(ValueError, match="teacher_steps"):
        PretrainConfig(teacher_steps=-1)


def test_an_int_for_a_float_field_is_the_same_recipe():
    from tvr.train.object_pretrain import ObjectPretrainConfig
    from tvr.train.presets import TrainConfig

    one, other = PretrainConfig(distill=5, lr=1), PretrainConfig(distill=5.0, lr=1.0)
    assert one == other and one.key() == other.key() and type(one.distill) is float and type(one.steps) is int
    assert ObjectPretrainConfig(lr=1).key() == ObjectPretrainConfig(lr=1.0).key()
    assert TrainConfig(order_negatives=1) == TrainConfig(order_negatives=1.0)


def test_distill_loss_reads_the_teachers_map_of_the_raw_pixels_under_each_patch():
    import torch.nn.functional as F

    from tvr.encoders.frames import pixel_scale
    from tvr.encoders.objects import ObjectNet, ObjectNetConfig
    from tvr.train.pretrain import build_model, distill_head, distill_loss, distill_teacher

    assert distill_teacher(TINY) is None and distill_head(TINY, None) is None  # off at weight 0
    cfg = PretrainConfig(**{**asdict(TINY), "distill": 1.0})
    torch.manual_seed(0)
    teacher = ObjectNet(ObjectNetConfig(image_size=32, widths=(4, 8), strides=(2, 2), labels=("a",))).eval()
    model, head = build_model(cfg, torch.randn(50, 32)), distill_head(cfg, teacher)
    unit = torch.rand(2, 3, 32, 32)  # pixels in [0, 1], as the teacher was trained on them
    mean, std = pixel_scale()
    images = (unit * 255.0 - mean) / std  # what step_batch gives the image tower
    tokens = model.visual.forward_tokens(images)
    loss = distill_loss(model, head, teacher, images, tokens, (mean, std))
    # by hand: the teacher's 8 × 8 map of the raw pixels, each 2 × 2 block averaged into the patch above it
    fmap = teacher.body((unit - 0.45) / 0.25).detach()
    blocks = fmap.reshape(2, 8, 4, 2, 4, 2).mean(dim=(3, 5)).reshape(2, 8, 16).transpose(1, 2)  # [N, 16 patches, C]
    target = (blocks - blocks.mean(-1, keepdim=True)) / torch.sqrt(blocks.var(-1, unbiased=False, keepdim=True) + 1e-5)
    want = ((head(tokens[:, 1:]) - target) ** 2).mean()
    assert torch.allclose(loss, want, atol=1e-5)
    assert not torch.allclose(F.mse_loss(head(tokens[:, 1:]), target[:, torch.randperm(16)]), want)  # the place matters
    loss.backward()
    assert model.visual.conv1.weight.grad.abs().sum() > 0 and all(p.grad is None for p in teacher.parameters())
