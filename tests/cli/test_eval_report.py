"""`tvr eval --report`: one self-contained HTML page whose worst-query table agrees with the ranks file."""

from __future__ import annotations

import json
import re


def test_report_is_self_contained_and_lists_the_worst_queries(run_cli, world, trained, tmp_path):
    report, ranks = tmp_path / "report.html", tmp_path / "ranks.jsonl"
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--postproc", "is", "--report", report,
                "--ranks-out", ranks, "--json")
    assert r.exit_code == 0, r.stderr
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 4  # R@K, tags, hubness, training
    assert "<script" not in page and not re.search(r"(src|href)=['\"]https?:", page)  # nothing fetched from anywhere
    assert "after is" in page and "validation t2v R@1" in page
    thumbs = re.findall(r"src='data:image/jpeg;base64,", page)
    rows = re.findall(r"<tr><td>(\d+)</td><td class='text'>(.*?)</td>", page)
    want = sorted((json.loads(x) for x in ranks.read_text().splitlines()), key=lambda d: -d["rank"])
    assert len(rows) == min(20, len(want)) and len(thumbs) == 2 * len(rows)
    assert [int(rank) for rank, _ in rows] == [round(d["rank"]) for d in want[: len(rows)]]
    doc = json.loads(r.stdout)
    assert f"{doc['t2v']['R@1']:.1f}" in page

    again = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", trained, "--report", report)
    assert again.exit_code == 2 and "already exists" in again.stderr
