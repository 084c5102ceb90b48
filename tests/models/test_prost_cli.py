"""ProST end to end: `tvr train --method prost`, `tvr eval --json`, then `tvr index` + `tvr search`
compared with exhaustive scoring by a freshly loaded model (the index holds event-mean candidate
vectors; every candidate is re-scored with the prototype similarity, so a pool covering the gallery
must give exactly the exhaustive top-k)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tvr.cli.main import main

QUERIES = ["a small red circle beside a big box", "a blue square then a green triangle", "yellow cross", "beeping"]
MODEL = {"phrase_prototypes": 6, "object_prototypes": 3, "event_prototypes": 2, "frame_decoder_layers": 1,
         "event_decoder_layers": 1}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prost")
    assert main(["synth", str(out / "w"), "--videos", "10", "--size", "32", "--seconds", "1", "--fps", "4", "--seed", "3"]) == 0
    (out / "tiny.json").write_text(json.dumps({"preset": "tiny", "model": MODEL, "train": {"epochs": 1, "batch_size": 4}}))
    assert main(["train", str(out / "w" / "all.jsonl"), "--method", "prost", "--out", str(out / "run"),
                 "--config", str(out / "tiny.json"), "--quiet"]) == 0
    return out


def test_train_and_eval_through_the_cli(run_cli, world):
    run = world / "run"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "prost" and cfg["config"]["object_prototypes"] == 3 and cfg["config"]["num_frames"] == 4
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["epoch"] == 1 and np.isfinite(rec["train_loss"])
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", run, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == "prost" and 0 <= doc["t2v"]["R@1"] <= 100 and doc["by_tag"]


def test_search_equals_exhaustive_scoring(run_cli, world):
    from tvr.data.batch import TextBatch
    from tvr.data.clips import Clips
    from tvr.features.store import clip_key
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model

    run, idx = world / "run", world / "idx"
    r = run_cli("index", world / "w" / "all.jsonl", "--checkpoint", run, "--out", idx, "--quiet", "--workers", "1")
    assert r.exit_code == 0, r.stderr
    manifest = read_manifest(world / "w" / "all.jsonl")
    keys = list(dict.fromkeys(clip_key(manifest.path_of(e), e.start, e.end) for e in manifest.entries))
    model = load_model(run)
    clips = Clips(run / "frames", keys, model.input_spec())
    with torch.no_grad():
        v = model.encode_video(clips.batch(range(len(keys))))
        t = model.encode_text(TextBatch(QUERIES))
        exhaustive = model.similarity(t, v).double().numpy()
        moments = model.frame_similarity(t, v)
    clips.close()
    for q, text in enumerate(QUERIES):
        for k in (1, 4, len(keys)):
            r = run_cli("search", idx, text, "-k", str(k), "--json")
            assert r.exit_code == 0, r.stderr
            hits = json.loads(r.stdout)["hits"]
            cols = [keys.index(h["key"]) for h in hits]
            got = np.array([h["score"] for h in hits])
            assert len(set(cols)) == len(cols) == k
            np.testing.assert_allclose(got, exhaustive[q, cols], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got, np.sort(exhaustive[q])[::-1][:k], rtol=1e-5, atol=1e-5)
        # the reported moment is the frame with the best per-frame object–phrase score
        best = hits[0]
        frame = int(moments[q, keys.index(best["key"])].argmax())
        assert best["moment"]["score"] == pytest.approx(float(moments[q, keys.index(best["key"]), frame]), abs=1e-5)
