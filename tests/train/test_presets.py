"""The default recipe (`cpu-small`) per method, and a user's config over a preset's per-method settings."""

from __future__ import annotations

import json

from tvr.train.presets import resolve


def model_and_train(config_file, method):
    resolved = resolve(config_file, method)
    return resolved.model, resolved.train


def test_cpu_small_gives_each_method_its_measured_recipe():
    seq, seq_train = model_and_train(None, "clip4clip-seqtransf")
    assert seq["backbone"]["text_context"] == "minilm" and seq["frame_position_std"] == 1.0
    assert seq_train.order_negatives == 1.0 and seq_train.hard_negatives == 0.5
    meanp, meanp_train = model_and_train(None, "clip4clip-meanp")
    assert "frame_position_std" not in meanp  # meanP has no frame positions
    mmt, mmt_train = model_and_train(None, "mmt")
    assert mmt["backbone"]["text_context"] == "none"  # MMT reads captions with its own MiniLM
    assert mmt["loss"] == "infonce"  # measured: the margin loss stalls by epoch 3
    assert mmt["experts"] == ["appearance", "motion", "audio", "objects"]  # measured: the objects expert lifts R@1
    assert mmt_train.init == "synthetic-videos" and mmt_train.epochs == 8  # measured: fine-tuned from itself pretrained
    assert seq_train.init == "synthetic-videos" and meanp_train.init == ""
    ts2net_train = resolve(None, "ts2net").train
    prost_train = resolve(None, "prost").train
    assert ts2net_train.init == "synthetic-videos" and ts2net_train.epochs == 8
    assert prost_train.init == "synthetic-videos" and prost_train.epochs == 8
    assert seq_train.epochs == 8
    rerank, rerank_train = model_and_train(None, "crosstvr")
    assert rerank_train.order_negatives == 0.0  # measured worse for the re-ranker
    assert rerank["residual"] is True  # measured: the stand-alone match score re-ranks below its first stage


def test_a_config_file_overrides_the_per_method_settings(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"order_negatives": 2.0}, "model": {"backbone": {"text_context": "none"}}}))
    rerank_model, rerank_train = model_and_train(path, "crosstvr")
    assert rerank_train.order_negatives == 2.0
    seq, seq_train = model_and_train(path, "clip4clip-seqtransf")
    assert seq["backbone"]["text_context"] == "none" and seq_train.order_negatives == 2.0
    assert seq["backbone"]["pretrained"] == "synthetic-clip"  # the rest of the preset stays
