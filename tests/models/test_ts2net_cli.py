"""TS2-Net end to end: `tvr train --method ts2net`, `tvr eval`, and `tvr index` + `tvr search` against
exhaustive scoring (the index holds mean-pooled candidates; search re-scores them with the full
frame-weighted similarity, so with a pool covering the gallery its top-k must be the exhaustive one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tvr.cli.main import main

QUERIES = ["a red circle", "blue square then green triangle", "small yellow cross", "a beep"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ts2net")
    assert main(["synth", str(out / "w"), "--videos", "12", "--size", "32", "--seconds", "1", "--fps", "4", "--seed", "5"]) == 0
    cfg = {"preset": "tiny", "model": {"backbone": {"vision_layers": 2}, "perturb_samples": 50},
           "train": {"epochs": 1, "batch_size": 4}}
    (out / "tiny.json").write_text(json.dumps(cfg))
    run = out / "run"
    assert main(["train", str(out / "w" / "all.jsonl"), "--method", "ts2net", "--out", str(run),
                 "--config", str(out / "tiny.json"), "--quiet"]) == 0
    return out


def test_train_and_eval_through_the_cli(run_cli, world):
    run = world / "run"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "ts2net" and cfg["config"]["shift_blocks"] == [-2, -1]
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["epoch"] == 1 and np.isfinite(rec["train_loss"])
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", run, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == "ts2net" and 0 <= doc["t2v"]["R@1"] <= 100 and doc["by_tag"]


def test_search_top_k_equals_exhaustive_scoring(run_cli, world):
    from tvr.data.batch import TextBatch
    from tvr.data.clips import Clips
    from tvr.features.store import clip_key
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model

    run, idx = world / "run", world / "idx"
    r = run_cli("index", world / "w" / "all.jsonl", "--checkpoint", run, "--out", idx, "--quiet", "--workers", "1")
    assert r.exit_code == 0, r.stderr
    m = read_manifest(world / "w" / "all.jsonl")
    keys = list(dict.fromkeys(clip_key(m.path_of(e), e.start, e.end) for e in m.entries))
    model = load_model(run)
    clips = Clips(run / "frames", keys, model.input_spec())
    with torch.no_grad():
        v = model.encode_video(clips.batch(range(len(keys))))
        t = model.encode_text(TextBatch(QUERIES))
        ref = model.similarity(t, v).double().numpy()
        cand = (t.pooled @ model.candidate_vectors(v).T).double().numpy()
    clips.close()
    # the candidate (mean-pooled) order is not the final order, so re-scoring is what makes it exact
    assert any(not np.array_equal(np.argsort(-ref[q])[:5], np.argsort(-cand[q])[:5]) for q in range(len(QUERIES)))
    for q, text in enumerate(QUERIES):
        for k in (1, 5, len(keys)):
            r = run_cli("search", idx, text, "-k", str(k), "--json")
            assert r.exit_code == 0, r.stderr
            hits = json.loads(r.stdout)["hits"]
            got = np.array([h["score"] for h in hits])
            cols = [keys.index(h["key"]) for h in hits]
            assert len(set(cols)) == len(cols) == k
            np.testing.assert_allclose(got, ref[q, cols], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got, np.sort(ref[q])[::-1][:k], rtol=1e-5, atol=1e-5)
