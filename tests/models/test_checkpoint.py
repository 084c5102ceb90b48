"""Model checkpoints: round trip, and clear errors for the wrong method / version / files."""

from __future__ import annotations

import json

import pytest
import torch
from test_clip4clip import tiny, video_batch

from tvr.errors import TvrError
from tvr.models import TextBatch, load_model, save_model


def test_round_trip_gives_identical_outputs(tmp_path):
    model = tiny("clip4clip-seqtransf", seed=3)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        torch.testing.assert_close(model.encode_video(video_batch()).pooled, loaded.encode_video(video_batch()).pooled)
        torch.testing.assert_close(model.encode_text(TextBatch(["red"])).pooled, loaded.encode_text(TextBatch(["red"])).pooled)


def test_wrong_method_version_and_missing_files(tmp_path):
    save_model(tiny("clip4clip-meanp"), tmp_path)
    with pytest.raises(TvrError, match="'clip4clip-meanp' model, expected 'clip4clip-seqtransf'"):
        load_model(tmp_path, method="clip4clip-seqtransf")
    doc = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(TvrError, match="version 99"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**doc, "method": "clip4clip-seqtransf"}))
    with pytest.raises(TvrError, match="do not fit"):
        load_model(tmp_path)  # weights of a meanP model under a seqTransf config
    with pytest.raises(TvrError, match="not found"):
        load_model(tmp_path / "nope")
