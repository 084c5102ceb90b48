"""`tvr eval` on manifests with undecodable videos: a one-line warning and a coverage line, or one error line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # the shared tiny world/run
from train_testlib import cli_process

GARBAGE = b"not a video at all " * 50


def broken_copy(world: Path, dest: Path, bad: dict[int, bytes]) -> list[dict]:
    """Copy the tiny world's videos under `dest`, write an unsplit `m.jsonl` of all its captions, and
    overwrite the videos at the given positions (distinct videos, manifest order) with bytes."""
    shutil.copytree(world / "w" / "videos", dest / "videos")
    rows = [json.loads(x) for x in (world / "w" / "all.jsonl").read_text().splitlines() if x.strip()]
    for r in rows:
        r.pop("split", None)
    (dest / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    videos = list(dict.fromkeys(r["video"] for r in rows))
    for i, data in bad.items():
        (dest / videos[i]).write_bytes(data)
    return rows


def eval_cli(manifest: Path, run_copy: Path, *extra: str) -> subprocess.CompletedProcess:
    # a wide console, so the table's caption lines are never wrapped
    return cli_process(["eval", str(manifest), "--checkpoint", str(run_copy), "--workers", "1", *extra],
                       env={"COLUMNS": "200"})


def private_run(trained: Path, dest: Path) -> Path:
    """A copy of the shared run: eval records the broken videos in the run's frame store."""
    shutil.copytree(trained, dest)
    return dest


def test_partial_decode_warns_and_table_states_coverage(world, trained, tmp_path):
    bad = {1: GARBAGE, 3: b"", 4: GARBAGE, 6: b""}
    rows = broken_copy(world, tmp_path / "data", bad)
    videos = list(dict.fromkeys(r["video"] for r in rows))
    bad_videos = [videos[i] for i in sorted(bad)]
    n_videos, n_queries = len(videos), len(rows)
    kept_queries = sum(r["video"] not in bad_videos for r in rows)
    run = private_run(trained, tmp_path / "run")

    r = eval_cli(tmp_path / "data" / "m.jsonl", run)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    w = warnings[0]
    assert w.startswith(f"warning: {len(bad)} of {n_videos} videos could not be decoded and were left out: "), w
    # the first three by manifest order, with their reasons; the rest counted
    assert f"{bad_videos[0]} (not a readable media file" in w and f"{bad_videos[1]} (empty file (0 bytes))" in w
    assert bad_videos[2] in w and bad_videos[3] not in w and w.endswith(" …and 1 more"), w
    assert str(tmp_path) not in w  # manifest spellings, not the store's absolute paths
    covers = (f"covers {n_videos - len(bad)} of {n_videos} videos, {kept_queries} of {n_queries} queries "
              f"({len(bad)} videos could not be decoded)")
    assert any(line.strip(" │") == covers for line in r.stderr.splitlines()), r.stderr

    j = eval_cli(tmp_path / "data" / "m.jsonl", run, "--json")  # failures come from the store this time
    assert j.returncode == 0 and "Traceback" not in j.stderr, j.stderr
    assert sum(x.startswith(f"warning: {len(bad)} of {n_videos} videos") for x in j.stderr.splitlines()) == 1
    doc = json.loads(j.stdout)
    assert doc["n_queries"] == kept_queries and doc["n_gallery"] == n_videos - len(bad)
    assert [Path(k).name for k in doc["skipped_videos"]] == [Path(v).name for v in bad_videos]
    cov = doc["coverage"]
    assert (cov["videos"], cov["videos_total"], cov["queries"], cov["queries_total"]) == (
        n_videos - len(bad), n_videos, kept_queries, n_queries)
    assert [f["video"] for f in cov["failures"]] == bad_videos and all(f["error"] for f in cov["failures"])


def test_all_zero_byte_videos_one_error_line(world, trained, tmp_path):
    rows = [json.loads(x) for x in (world / "w" / "all.jsonl").read_text().splitlines() if x.strip()]
    videos = list(dict.fromkeys(r["video"] for r in rows))
    broken_copy(world, tmp_path / "data", {i: b"" for i in range(len(videos))})
    run = private_run(trained, tmp_path / "run")

    r = eval_cli(tmp_path / "data" / "m.jsonl", run)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    assert errors[0] == (f"error: {tmp_path / 'data' / 'm.jsonl'}: none of its {len(videos)} videos could be decoded; "
                         f"e.g. {videos[0]}: empty file (0 bytes)")
    assert "warning:" not in r.stderr
