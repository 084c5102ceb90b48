"""`tvr index` / `tvr search` end to end, and every bad input as one line + exit 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))
from index_helpers import make_checkpoint, make_collection, one_line_error  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tvr.cli.main import main

    root = tmp_path_factory.mktemp("cli")
    manifest = make_collection(root, n_videos=5, seed=3)
    run = make_checkpoint(root / "run", manifest=manifest)
    assert main(["index", str(manifest), "-c", str(run), "-o", str(root / "idx"), "-w", "1", "-q"]) == 0
    return root, manifest, run


def test_search_json_and_table(built, run_cli):
    root, _, _ = built
    r = run_cli("search", root / "idx", "a red square", "-k", "3", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["k"] == 3 and doc["postproc"] == "none" and doc["transductive"] is False and doc["n_gallery"] == 5
    assert [h["rank"] for h in doc["hits"]] == [1, 2, 3]
    scores = [h["score"] for h in doc["hits"]]
    assert scores == sorted(scores, reverse=True)
    for h in doc["hits"]:
        assert h["video"].startswith("videos/v") and 0 <= h["moment"]["time_s"] < 2
    r = run_cli("search", root / "idx", "a red square", "--postproc", "dis")
    assert r.exit_code == 0 and r.stdout == ""
    assert "videos/v0" in r.stderr and "dis" in r.stderr


def test_index_json_report_and_idempotent_rerun(built, run_cli):
    root, manifest, run = built
    r = run_cli("index", manifest, "-c", run, "-o", root / "idx", "-w", "1", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["n_items"] == 5 and doc["n_failed"] == 0 and doc["extract"]["skipped"] == 5
    assert doc["querybank_size"] == 4  # train split: 2 videos × 2 captions


def test_index_beta_is_stored_with_the_querybank(built, run_cli, tmp_path):
    root, manifest, run = built
    r = run_cli("index", manifest, "-c", run, "-o", tmp_path / "idx", "-w", "1", "--store", root / "run" / "frames",
                "--beta", "2", "-q")
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["querybank"]["beta"] == 2.0
    assert json.loads((root / "idx" / "index.json").read_text())["querybank"]["beta"] == 20.0  # the default
    one_line_error(run_cli("index", manifest, "-c", run, "-o", tmp_path / "i2", "--beta", "-1"), "--beta", "positive")


def test_another_model_into_existing_index_needs_force(built, run_cli, tmp_path):
    root, manifest, _ = built
    other = make_checkpoint(tmp_path / "other", seed=1)
    out = tmp_path / "idx"
    shutil.copytree(root / "idx", out)
    args = ("index", manifest, "-c", other, "-o", out, "-w", "1", "--store", root / "run" / "frames", "-q")
    one_line_error(run_cli(*args), "another model", "--force")
    r = run_cli(*args, "--force")
    assert r.exit_code == 0, r.stderr
    # the other checkpoint recorded no training manifest: no querybank, so no post-processing
    one_line_error(run_cli("search", out, "red", "--postproc", "is"), "no querybank")


def test_corrupted_or_swapped_index_files(built, run_cli, tmp_path):
    root, _, _ = built
    out = tmp_path / "idx"
    shutil.copytree(root / "idx", out)
    info = json.loads((out / "index.json").read_text())
    gallery = out / info["files"]["gallery"]["path"]
    gallery.write_bytes(gallery.read_bytes()[:-8] + b"garbage!")
    one_line_error(run_cli("search", out, "red"), "checksum mismatch")

    shutil.rmtree(out)
    shutil.copytree(root / "idx", out)
    other = make_checkpoint(tmp_path / "other", seed=2)  # weights of another model, checksums updated
    weights = out / info["files"]["model_weights"]["path"]
    shutil.copyfile(other / "model.safetensors", weights)
    from tvr.index.layout import sha256_file

    info["files"]["model_weights"]["sha256"] = sha256_file(weights)
    (out / "index.json").write_text(json.dumps(info))
    one_line_error(run_cli("search", out, "red"), "not the one the index was built with")

    (out / "index.json").write_text("{not json")
    one_line_error(run_cli("search", out, "red"), "index.json", "not valid JSON")
    (out / "index.json").write_text(json.dumps({**info, "version": 99}))
    one_line_error(run_cli("search", out, "red"), "version 99")


def test_bad_search_input(built, run_cli, tmp_path):
    root, _, _ = built
    one_line_error(run_cli("search", tmp_path / "nope", "red"), "not found")
    one_line_error(run_cli("search", tmp_path, "red"), "not a tvr index")
    one_line_error(run_cli("search", root / "idx", "red", "--postproc", "bogus"), "unknown post-processor", "bogus")
    one_line_error(run_cli("search", root / "idx", "red", "--postproc", "dsl"), "dsl")
    one_line_error(run_cli("search", root / "idx", "red", "-k", "0"), "-k")
    one_line_error(run_cli("search", root / "idx", "   "), "non-empty")


def test_bad_index_input(built, run_cli, tmp_path):
    root, manifest, run = built
    one_line_error(run_cli("index", tmp_path / "none", "-c", run, "-o", tmp_path / "i"), "no such folder or manifest")
    one_line_error(run_cli("index", manifest, "-c", tmp_path, "-o", tmp_path / "i"), "config.json")
    one_line_error(run_cli("index", manifest, "-c", run, "-o", tmp_path / "i", "--kind", "lsh"), "index kind")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    one_line_error(run_cli("index", manifest, "-c", run, "-o", tmp_path / "full"), "not a tvr index", "notes.txt")
    one_line_error(run_cli("index", manifest, "-c", run, "-o", tmp_path / "i", "--querybank", tmp_path / "q.jsonl"),
                    "manifest not found")
