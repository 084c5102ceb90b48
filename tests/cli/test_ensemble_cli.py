"""`tvr ensemble` end to end: fuse two runs, index the fusion, search it; bad input is one line + exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))
from index_helpers import make_checkpoint, make_collection, one_line_error  # noqa: E402


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    from tvr.cli.main import main

    root = tmp_path_factory.mktemp("ens")
    manifest = make_collection(root, n_videos=5, seed=4)
    a = make_checkpoint(root / "a", seed=0, manifest=manifest)
    b = make_checkpoint(root / "b", "clip4clip-seqtransf", seed=1, manifest=manifest, overrides={"temporal_layers": 1})
    assert main(["ensemble", str(a), str(b), "-o", str(root / "ens"), "--weights", "1,3"]) == 0
    assert main(["index", str(manifest), "-c", str(root / "ens"), "-o", str(root / "idx"), "-w", "1", "-q"]) == 0
    return root, manifest, a, b


def test_search_over_a_fused_index_ranks_by_the_members_weighted_scores(fused, run_cli):
    from tvr.data.pairs import load_pairs
    from tvr.io.manifest import read_manifest
    from tvr.models.encode import encode_clips, encode_texts, score_matrix
    from tvr.models.registry import load_model

    root, manifest, a, b = fused
    r = run_cli("search", root / "idx", "a red square", "-k", "5", "--json")
    assert r.exit_code == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    # brute force from the two runs: α_m = w_m λ_m / Σ w λ (both runs start at CLIP's λ = 1/0.07)
    m = read_manifest(manifest)
    total = np.zeros(len(m.video_keys()))
    for run, w in ((a, 1.0), (b, 3.0)):
        model = load_model(run)
        pairs = load_pairs(m, model.input_spec(), root / "store", progress=False)
        t = encode_texts(model, ["a red square"], "cpu")
        total += w / 4.0 * score_matrix(model, t, encode_clips(model, pairs.clips, "cpu"))[0]
        keys = [Path(k).relative_to(root).as_posix() for k in pairs.clips.keys]
    order = np.argsort(-total, kind="stable")
    assert [h["video"] for h in hits] == [keys[i] for i in order]
    assert [h["score"] for h in hits] == pytest.approx(total[order].tolist(), abs=1e-4)
    assert all(0 <= h["moment"]["time_s"] < 2 for h in hits)  # from the meanP member's frames


def test_json_summary_and_bad_input(fused, run_cli, tmp_path):
    root, _, a, b = fused
    r = run_cli("ensemble", a, b, "-o", tmp_path / "e", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [m["share"] for m in doc["members"]] == pytest.approx([0.5, 0.5]) and doc["path"] == str(tmp_path / "e")
    one_line_error(run_cli("ensemble", a, b, "-o", tmp_path / "e"), "not empty", "--force")
    assert run_cli("ensemble", a, b, "-o", tmp_path / "e", "--force").exit_code == 0
    one_line_error(run_cli("ensemble", a, "-o", tmp_path / "x"), "at least two runs")
    one_line_error(run_cli("ensemble", a, b, "-o", tmp_path / "x", "--weights", "1,x"), "--weights", "numbers")
    one_line_error(run_cli("ensemble", a, b, "-o", tmp_path / "x", "--weights", "1"), "1 values for 2 runs")
    one_line_error(run_cli("ensemble", a, b, "-o", tmp_path / "x", "--weights", "1,-2"), "> 0")
    one_line_error(run_cli("ensemble", a, tmp_path / "nope", "-o", tmp_path / "x"), "nope", "not found")
    assert not (tmp_path / "x").exists()
    manifest = fused[1]
    one_line_error(run_cli("train", manifest, "--method", "ensemble", "--out", tmp_path / "t"), "not trained", "tvr ensemble")
    assert not (tmp_path / "t").exists()


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    manifest = make_collection(root, n_videos=10, seed=4)
    runs = [make_checkpoint(root / f"meanp{s}", seed=s, manifest=manifest) for s in range(4)]
    runs.append(make_checkpoint(root / "seq", "clip4clip-seqtransf", seed=1, manifest=manifest,
                                overrides={"temporal_layers": 1}))
    return root, manifest, runs


def test_select_on_fuses_the_runs_that_lift_held_out_r1(candidates, run_cli):
    root, manifest, runs = candidates
    r = run_cli("ensemble", *runs, "-o", root / "ens", "--select-on", manifest, "--split", "test", "-w", "1", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    sel = doc["selection"]
    assert len(sel["runs"]) >= 2 and set(sel["runs"]) <= {str(p) for p in runs}
    assert [m["run"] for m in doc["members"]] == sel["runs"] and sel["weights"] == [1.0] * len(sel["runs"])
    assert sel["R@1"] > max(sel["alone"].values())  # fused only because it beats every run alone
    assert sel["path"][-1]["members"] == sel["runs"] and sel["path"][-1]["R@1"] == sel["R@1"]

    def eval_r1(checkpoint):
        out = run_cli("eval", manifest, "-c", checkpoint, "--split", "test", "--json")
        assert out.exit_code == 0, out.stderr
        return round(json.loads(out.stdout)["t2v"]["R@1"], 2)

    # the selection's numbers are the ones `tvr eval` gives each run and the written ensemble
    assert eval_r1(root / "ens") == pytest.approx(sel["R@1"], abs=0.01)
    for run in runs:
        assert eval_r1(run) == pytest.approx(sel["alone"][str(run)], abs=0.01)
    # bagged: weights are picks, and the written ensemble holds them
    r = run_cli("ensemble", *runs, "-o", root / "bag", "--select-on", manifest, "--split", "test", "--bags", "4",
                "-w", "1", "--json")
    assert r.exit_code == 0, r.stderr
    bag = json.loads(r.stdout)
    weights = bag["selection"]["weights"]
    assert sum(weights) >= 4 and all(w == int(w) and w >= 1 for w in weights)
    assert bag["members"][0]["share"] > 0 and eval_r1(root / "bag") == pytest.approx(bag["selection"]["R@1"], abs=0.01)


def test_select_on_refusals_are_one_line(candidates, run_cli):
    import shutil

    root, manifest, runs = candidates
    twin = root / "twin"
    shutil.copytree(runs[0], twin)  # the same weights: fusing them never changes a ranking
    one_line_error(run_cli("ensemble", runs[0], twin, "-o", root / "no", "--select-on", manifest, "--split", "test"),
                   "no ensemble beats", "use that run as it is")
    assert not (root / "no").exists()
    one_line_error(run_cli("ensemble", *runs[:2], "-o", root / "no", "--select-on", manifest, "--weights", "1,2"),
                   "--weights and --select-on")
    one_line_error(run_cli("ensemble", *runs[:2], "-o", root / "no", "--select-on", manifest, "--bags", "-1"), "--bags")
    one_line_error(run_cli("ensemble", *runs[:2], "-o", root / "no", "--select-on", manifest, "--split", "dev"), "--split")
    one_line_error(run_cli("ensemble", *runs[:2], "-o", root / "no", "--select-on", root / "missing.jsonl"), "missing.jsonl")
    # a run sampling frames otherwise is refused as it is loaded, before it is scored
    odd = make_checkpoint(root / "odd", seed=5, manifest=manifest, overrides={"num_frames": 3})
    one_line_error(run_cli("ensemble", runs[0], odd, runs[1], "-o", root / "no", "--select-on", manifest, "--split", "test"),
                   "odd cannot be fused with", "sample frames differently")
    assert not (odd / "frames").exists() and not (root / "no").exists()
    (root / "full").mkdir()
    (root / "full" / "x").write_text("keep")
    one_line_error(run_cli("ensemble", *runs[:2], "-o", root / "full", "--select-on", manifest), "not empty", "--force")
    assert (root / "full" / "x").read_text() == "keep"
