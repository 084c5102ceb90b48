"""`tvr train --first-stage`, `tvr eval --rerank`, `tvr search --rerank` on a tiny world; errors → one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_testlib import one_line_error

from tvr.cli.main import main


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rerank")
    assert main(["synth", str(out / "w"), "--videos", "12", "--size", "32", "--seconds", "1", "--fps", "4", "--seed", "5"]) == 0
    (out / "tiny.json").write_text(json.dumps({"preset": "tiny", "train": {"epochs": 1, "batch_size": 4}}))
    (out / "rr.json").write_text(json.dumps({"preset": "tiny", "model": {"layers": 1, "heads": 2, "num_queries": 2},
                                             "train": {"epochs": 1, "batch_size": 4}}))
    assert main(["train", str(out / "w" / "all.jsonl"), "--method", "clip4clip-meanp", "--out", str(out / "first"),
                 "--config", str(out / "tiny.json"), "--quiet"]) == 0
    assert main(["train", str(out / "w" / "all.jsonl"), "--method", "crosstvr", "--first-stage", str(out / "first"),
                 "--out", str(out / "rr"), "--config", str(out / "rr.json"), "--quiet"]) == 0
    return out


def test_rerank_run_records_its_first_stage(world):
    doc = json.loads((world / "rr" / "config.json").read_text())
    assert doc["method"] == "crosstvr" and Path(doc["first_stage"]) == (world / "first").resolve()
    assert len(doc["first_stage_sha256"]) == 64 and doc["config"]["width"] == 32 and doc["config"]["num_frames"] == 4
    rec = json.loads((world / "rr" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["train_loss"] > 0


def test_resume_continues_the_rerank_run(run_cli, world):
    r = run_cli("train", world / "w" / "all.jsonl", "--method", "crosstvr", "--out", world / "rr", "--resume",
                "--epochs", "2", "--quiet")
    assert r.exit_code == 0, r.stderr
    lines = (world / "rr" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_eval_with_rerank_reports_both_stages(run_cli, world):
    base = run_cli("eval", world / "w" / "all.jsonl", "-c", world / "first", "--split", "train", "--json")
    two = run_cli("eval", world / "w" / "all.jsonl", "-c", world / "first", "--split", "train", "--json",
                  "--rerank", world / "rr", "--rerank-k", "3")
    assert base.exit_code == 0 and two.exit_code == 0, two.stderr
    b, t = json.loads(base.stdout), json.loads(two.stdout)
    assert t["rerank"]["k"] == 3 and t["rerank"]["first_stage_t2v"] == b["t2v"]
    assert t["v2t"] == b["v2t"] and t["n_queries"] == b["n_queries"]
    # candidates past K keep the first stage's ranks: R@k for k ≥ 3 cannot change
    assert t["t2v"]["R@5"] == pytest.approx(b["t2v"]["R@5"]) and t["t2v"]["R@10"] == pytest.approx(b["t2v"]["R@10"])


def test_search_with_rerank_scores_only_candidates(world, monkeypatch):
    from tvr.index.rerank_searcher import RerankSearcher
    from tvr.index.search import Searcher
    from tvr.models.crosstvr import CrossTvrReranker

    assert main(["index", str(world / "w" / "all.jsonl"), "--checkpoint", str(world / "first"),
                 "--out", str(world / "idx")]) == 0
    searcher = Searcher.open(world / "idx")
    try:
        texts = ["a red circle", "a blue square moving left"]
        plain = searcher.search(texts, k=6)
        rs = RerankSearcher.open(searcher, world / "rr", k=3)
        hits = rs.search(texts, k=6)
        assert rs.pairs_scored == 2 * 3 and rs.gallery_tokens.computed <= 2 * 3  # K per query, not the gallery
        for p, h in zip(plain, hits):
            assert {x.row for x in p[:3]} == {x.row for x in h[:3]} and [x.row for x in p[3:]] == [x.row for x in h[3:]]
            assert all(h[i].score >= h[i + 1].score for i in range(len(h) - 1))
        # a re-ranker that outputs zero leaves the first-stage ranking as it was
        monkeypatch.setattr(CrossTvrReranker, "score_pairs", lambda self, t, v: t.pooled.new_zeros(len(t)))
        zero = RerankSearcher.open(searcher, world / "rr", k=3).search(texts, k=6)
        for p, z in zip(plain, zero):
            assert [x.row for x in p] == [x.row for x in z]
            np.testing.assert_allclose([x.score for x in p[:3]], [x.score for x in z[:3]])
    finally:
        searcher.close()


def test_search_cli_rerank_json(run_cli, world):
    if not (world / "idx").exists():
        assert main(["index", str(world / "w" / "all.jsonl"), "--checkpoint", str(world / "first"), "--out", str(world / "idx")]) == 0
    r = run_cli("search", world / "idx", "a red circle", "-k", "4", "--rerank", world / "rr", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rerank"]["k"] == 15 and [h["rank"] for h in doc["hits"]] == [1, 2, 3, 4]


def test_errors_are_one_line(run_cli, world, tmp_path):
    m = world / "w" / "all.jsonl"
    one_line_error(run_cli("train", m, "--method", "crosstvr", "--out", tmp_path / "a"), "--first-stage")
    one_line_error(run_cli("train", m, "--method", "clip4clip-meanp", "--out", tmp_path / "b", "--first-stage", world / "first"),
                   "--first-stage")
    one_line_error(run_cli("train", m, "--method", "crosstvr", "--out", tmp_path / "c", "--first-stage", tmp_path / "none"),
                   "none")
    one_line_error(run_cli("eval", m, "-c", world / "first", "--rerank", world / "first"), "not a re-ranker")
    one_line_error(run_cli("eval", m, "-c", world / "first", "--rerank", world / "rr", "--rerank-k", "0"), "--rerank-k")
    one_line_error(run_cli("eval", m, "-c", world / "rr"), "re-ranker")


def test_a_first_stage_without_tokens_is_refused_before_any_video_is_decoded(run_cli, world, tmp_path):
    from tvr.models.ensemble import write_ensemble
    from tvr.models.registry import load_model, save_model
    from tvr.train.trainer import FRAMES_DIR

    save_model(load_model(world / "first"), tmp_path / "twin")
    write_ensemble([world / "first", tmp_path / "twin"], tmp_path / "ens")
    result = run_cli("train", world / "w" / "all.jsonl", "--method", "crosstvr", "--first-stage", tmp_path / "ens",
                     "--out", tmp_path / "rr", "--config", world / "rr.json")
    one_line_error(result, "'ensemble' exposes no text tokens")
    assert not (tmp_path / "ens" / FRAMES_DIR).exists() and not (tmp_path / "rr").exists()


def test_pair_scorer_does_not_depend_on_batching(world):
    """Text batches of different token widths (the text tower trims each batch) score identically."""
    from tvr.data.pairs import load_pairs
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import load_model, load_reranker
    from tvr.postproc.two_stage import rerank_pairs_scorer

    first = load_model(world / "first")
    reranker, _, _ = load_reranker(world / "rr")
    pairs = load_pairs(read_manifest(world / "w" / "all.jsonl"), first.input_spec(), world / "first" / "frames", progress=False)
    texts = [e.caption for e in pairs.entries][:9]
    q, g = np.arange(9), np.arange(9) % len(pairs.clips)
    whole = rerank_pairs_scorer(first, reranker, texts, pairs.clips, "cpu")(q, g)
    split = rerank_pairs_scorer(first, reranker, texts, pairs.clips, "cpu", video_batch=5, text_batch=2)(q, g)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-5)


def test_rerank_batches_follow_the_hard_negative_setting(world, tmp_path):
    """The re-ranker trains on the first-stage trainer's batches: `train.hard_negatives` 0 reproduces the
    fixture's run (the tiny preset's share is 0) weight for weight, and grouping near-neighbour
    captions changes the batches, hence the weights."""
    from safetensors.torch import load_file

    weights = {}
    for share in (0.0, 1.0):
        cfg = tmp_path / f"rr{share}.json"
        cfg.write_text(json.dumps({"preset": "tiny", "model": {"layers": 1, "heads": 2, "num_queries": 2},
                                   "train": {"epochs": 1, "batch_size": 4, "hard_negatives": share, "negative_group": 2}}))
        out = tmp_path / f"rr{share}"
        assert main(["train", str(world / "w" / "all.jsonl"), "--method", "crosstvr", "--first-stage", str(world / "first"),
                     "--out", str(out), "--config", str(cfg), "--quiet"]) == 0
        assert json.loads((out / "config.json").read_text())["training"]["train"]["hard_negatives"] == share
        weights[share] = load_file(str(out / "model.safetensors"))
    reference = tmp_path / "reference"  # the fixture's run after one epoch (a later test resumes it to two)
    assert main(["train", str(world / "w" / "all.jsonl"), "--method", "crosstvr", "--first-stage", str(world / "first"),
                 "--out", str(reference), "--config", str(world / "rr.json"), "--quiet"]) == 0
    ref = load_file(str(reference / "model.safetensors"))
    assert all(np.array_equal(weights[0.0][k].numpy(), ref[k].numpy()) for k in ref)
    assert any(not np.array_equal(weights[1.0][k].numpy(), ref[k].numpy()) for k in ref)


def test_residual_reranker_starts_from_its_calibrated_first_stage(world, tmp_path, monkeypatch):
    """A residual re-ranker records the first stage's logistic calibration, its first loss is the
    calibrated first stage's BCE, and untrained it ranks exactly as the first stage does."""
    import torch
    from torch.nn import functional as F

    from tvr.data.pairs import load_pairs
    from tvr.io.manifest import read_manifest
    from tvr.models.registry import build, load_model, load_reranker
    from tvr.postproc.two_stage import rerank_pairs_scorer, two_stage_scores
    from tvr.train.presets import resolve
    from tvr.train.rerank_trainer import batch_loss, calibrate_first_stage, freeze_pairs, sample_hard_negatives
    from tvr.train.trainer import FRAMES_DIR, batches_for_epoch, split_for_training

    cfg = tmp_path / "residual.json"
    cfg.write_text(json.dumps({"preset": "tiny", "model": {"layers": 1, "heads": 2, "num_queries": 2, "residual": True},
                               "train": {"epochs": 1, "batch_size": 4}}))
    assert main(["train", str(world / "w" / "all.jsonl"), "--method", "crosstvr", "--first-stage", str(world / "first"),
                 "--out", str(tmp_path / "rr"), "--config", str(cfg), "--quiet"]) == 0
    reranker, _, _ = load_reranker(tmp_path / "rr")
    first = load_model(world / "first")
    for p in first.parameters():
        p.requires_grad_(False)  # frozen, as the trainer holds it
    train_cfg = resolve(cfg, "crosstvr").train
    train_m, _ = split_for_training(read_manifest(world / "w" / "all.jsonl"), train_cfg)
    pairs = load_pairs(train_m, first.input_spec(), world / "first" / FRAMES_DIR)
    frozen = freeze_pairs(first, pairs, torch.device("cpu"))
    a, b = calibrate_first_stage(first, frozen, train_cfg)
    assert reranker.config.residual and reranker.merge_weight == pytest.approx(a)

    fresh = build("crosstvr", reranker.config)  # untrained: head weights 0
    with torch.no_grad():
        fresh.head.bias.fill_(b)
    caps, rows = batches_for_epoch(frozen.pairs, train_cfg, 0)[0]
    got = batch_loss(fresh, frozen, caps, rows, first, np.random.default_rng([train_cfg.seed, 0, 0]), torch.device("cpu"))
    cos = first.similarity(frozen.first_text.select(torch.as_tensor(caps)), frozen.first_video.select(torch.as_tensor(rows)))
    neg_t, neg_v = sample_hard_negatives(cos * first.scale(), [frozen.pairs.entries[c].caption for c in caps],
                                         np.random.default_rng([train_cfg.seed, 0, 0]))
    every = np.arange(len(caps))
    x = torch.cat([cos[every, every], cos[neg_t, every], cos[every, neg_v]]).double()
    y = torch.cat([torch.ones(len(caps)), torch.zeros(2 * len(caps))]).double()
    want = F.binary_cross_entropy_with_logits(a * x + b, y)  # the calibrated first stage alone
    assert float(got.detach()) == pytest.approx(float(want), rel=1e-5)
    # with order negatives, each order caption's own clip (halves swapped) is scored at its unswapped first-stage logit
    from tvr.train.order_negatives import order_rows

    caps_all = [frozen.pairs.entries[c].caption for c in caps]
    ordered = order_rows(caps_all, frozen.frame_mask[torch.as_tensor(rows)].sum(1).tolist())
    assert ordered, caps_all  # the check below needs an order caption in the batch
    got = batch_loss(fresh, frozen, caps, rows, first, np.random.default_rng([train_cfg.seed, 0, 0]), torch.device("cpu"),
                     order_weight=2.0)
    swapped = cos[ordered, ordered].double()
    total = F.binary_cross_entropy_with_logits(a * x + b, y, reduction="sum") + 2.0 * F.binary_cross_entropy_with_logits(
        a * swapped + b, torch.zeros(len(ordered), dtype=torch.float64), reduction="sum")
    assert float(got.detach()) == pytest.approx(float(total) / (len(y) + len(ordered)), rel=1e-5)

    texts = [e.caption for e in pairs.entries]
    first_qg = first.similarity(frozen.first_text, frozen.first_video).double().numpy()
    final = two_stage_scores(first_qg, 5, rerank_pairs_scorer(first, fresh, texts, pairs.clips, "cpu"),
                             first_weight=fresh.merge_weight)
    np.testing.assert_array_equal(np.argsort(-final, axis=1, kind="stable")[:, :5],
                                  np.argsort(-first_qg, axis=1, kind="stable")[:, :5])
    # eval and the trainer's validation merge on the same scale: a · first + the re-ranker's score
    from tvr.eval.evaluate import apply_two_stage
    from tvr.eval.metrics import retrieval_metrics
    from tvr.postproc.two_stage import TwoStage
    from tvr.train.rerank_trainer import validate_two_stage

    gain = [1.0]

    def spread(self, t, v):  # a deterministic score of each pair
        return gain[0] * (t.pooled * v.pooled).sum(-1)

    monkeypatch.setattr(type(fresh), "score_pairs", spread)
    gt = [int(r) for r in frozen.pairs.video_rows]
    scorer = rerank_pairs_scorer(first, fresh, texts, pairs.clips, "cpu")
    every = np.arange(first_qg.size)
    gain[0] = a * first_qg.std() / scorer(every // first_qg.shape[1], every % first_qg.shape[1]).std()  # as spread as a · first
    want = two_stage_scores(first_qg, 5, scorer, first_weight=a)
    unweighted = two_stage_scores(first_qg, 5, scorer)
    assert not np.array_equal(np.argsort(-want, axis=1)[:, :5], np.argsort(-unweighted, axis=1)[:, :5])  # sensitive
    _, final = apply_two_stage({"t2v": {}}, TwoStage(fresh, 5, "rr"), first, texts, pairs.clips, first_qg, gt, "cpu")
    np.testing.assert_allclose(final, want)
    val = validate_two_stage(first, fresh, frozen, torch.device("cpu"), 5)
    assert val["t2v"] == retrieval_metrics(want, gt)["t2v"]
    assert val["t2v"] != retrieval_metrics(unweighted, gt)["t2v"]

    monkeypatch.undo()  # the re-ranker scores pairs itself again

    # a residual run resumes from its config (the recorded slope) and weights
    assert main(["train", str(world / "w" / "all.jsonl"), "--method", "crosstvr", "--out", str(tmp_path / "rr"),
                 "--resume", "--epochs", "2", "--quiet"]) == 0
    resumed, _, _ = load_reranker(tmp_path / "rr")
    assert resumed.config.first_stage_scale == reranker.config.first_stage_scale
    assert [json.loads(x)["epoch"] for x in (tmp_path / "rr" / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    # search merges on the same scale: with a zero correction, every shown score is a × the first stage's
    from tvr.index.rerank_searcher import RerankSearcher
    from tvr.index.search import Searcher

    if not (world / "idx").exists():
        assert main(["index", str(world / "w" / "all.jsonl"), "--checkpoint", str(world / "first"), "--out", str(world / "idx")]) == 0
    searcher = Searcher.open(world / "idx")
    try:
        plain = searcher.search(texts[:2], k=6)
        rs = RerankSearcher.open(searcher, tmp_path / "rr", k=3)
        rs.reranker.head.weight.data.zero_()
        rs.reranker.head.bias.data.zero_()
        for p, h in zip(plain, rs.search(texts[:2], k=6)):
            assert [x.row for x in p] == [x.row for x in h]
            np.testing.assert_allclose([x.score for x in h[:3]], [a * x.score for x in p[:3]], rtol=1e-6)
    finally:
        searcher.close()


def test_a_one_video_training_set_is_one_line_for_a_residual_reranker(run_cli, world, tmp_path):
    lines = [json.loads(x) for x in (world / "w" / "all.jsonl").read_text().splitlines() if x.strip()]
    one = [dict(e, split="train") for e in lines if e["video"] == lines[0]["video"]]
    manifest = world / "w" / "one-video.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in one))
    config = tmp_path / "residual.json"
    config.write_text(json.dumps({"preset": "tiny", "model": {"layers": 1, "heads": 2, "num_queries": 2, "residual": True},
                                  "train": {"epochs": 1, "batch_size": 4}}))
    one_line_error(run_cli("train", manifest, "--method", "crosstvr", "--first-stage", world / "first", "--out", tmp_path / "rr",
                           "--config", config), "fewer than 2 decodable training videos")
