"""The run's published model is the epoch with the best validation R@1; --resume state stays the latest."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from tvr.models.registry import build, make_config
from tvr.train.checkpoint import best_epoch, save_training_checkpoint


def record(epoch: int, r1: float | None) -> dict:
    doc = {"epoch": epoch}
    if r1 is not None:
        doc["val"] = {"t2v": {"R@1": r1}}
    return doc


def test_best_epoch_picks_the_highest_and_the_earliest_of_ties():
    assert best_epoch([record(1, 10.0), record(2, 30.0), record(3, 20.0)]) == 2
    assert best_epoch([record(1, 30.0), record(2, 30.0), record(3, 20.0)]) == 1
    assert best_epoch([record(1, None), record(2, None)]) == 2  # no validation: the last
    assert best_epoch([]) == 0


def test_a_worse_epoch_keeps_the_published_model_but_moves_the_state(tmp_path):
    cfg = make_config("clip4clip-meanp", {"num_frames": 2, "image_size": 16, "backbone": {
        "embed_dim": 8, "patch_size": 8, "vision_width": 8, "vision_layers": 1, "vision_heads": 1, "text_width": 8,
        "text_layers": 1, "text_heads": 1, "vocabulary": ["red"]}})
    model = build("clip4clip-meanp", cfg)
    opt = torch.optim.AdamW(model.parameters())
    history = [record(1, 40.0)]
    save_training_checkpoint(tmp_path, model, opt, {"epoch": 1, "step": 1}, {}, publish=best_epoch(history) == 1)
    first = {k: v.clone() for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    history.append(record(2, 20.0))
    save_training_checkpoint(tmp_path, model, opt, {"epoch": 2, "step": 2}, {}, publish=best_epoch(history) == 2)
    published = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(published[k], first[k]) for k in first)  # epoch 1 is still the run's model
    assert json.loads((tmp_path / "config.json").read_text())["selected_epoch"] == 1
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    latest = load_file(str(tmp_path / state["model_file"]))
    assert state["epoch"] == 2 and not torch.equal(latest["logit_scale"], first["logit_scale"])
