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
