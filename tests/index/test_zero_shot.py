"""Zero-shot indexing with a pretrained CLIP, incremental updates, and search by example.

The pretrained model is a tiny random `transformers.CLIPModel` saved with `save_pretrained` (the
format a practitioner has); the reference scores come from transformers itself, not from tvr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from index_helpers import make_video

from tvr.errors import TvrError
from tvr.index.build import BuildOptions, build_index
from tvr.index.search import Searcher
from tvr.models.zero_shot import ZeroShotSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoders"))
from encoder_testlib import make_hf_clip  # noqa: E402

N_VIDEOS = 12
FRAMES = 4
QUERIES = [
    "a red circle", "blue square moving left", "green", "a large square then a small circle", "right",
    "red then blue", "small green circle", "moving", "a square", "large blue", "left then right", "circle",
    "green square", "blue", "red", "small", "a large red circle moving right", "square circle", "then", "a",
]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("hf_clip")
    make_hf_clip(directory, seed=3)
    return directory


def _features(out) -> torch.Tensor:
    """Projected features: transformers 5 returns an output object (projection in `pooler_output`)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _folder(root: Path, n: int = N_VIDEOS, first_seed: int = 0) -> Path:
    for i in range(n):
        make_video(root / f"v{i:02d}.mp4", seed=first_seed + i)
    return root


def _opts(**kw) -> BuildOptions:
    return BuildOptions(workers=1, progress=False, **kw)


def test_zero_shot_hits_equal_brute_force_meanp_computed_by_transformers(clip_dir, tmp_path):
    from transformers import CLIPModel, CLIPTokenizer

    from tvr.io.decoded import DecodeSpec
    from tvr.io.video import decode

    videos = _folder(tmp_path / "videos")
    report = build_index(videos, ZeroShotSpec(str(clip_dir), num_frames=FRAMES), tmp_path / "idx", _opts())
    assert (report.n_items, report.n_encoded, report.n_reused) == (N_VIDEOS, N_VIDEOS, 0)
    assert report.method == "clip4clip-meanp" and report.querybank_size == 0
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    saved = json.loads((tmp_path / "idx" / info["data_dir"] / "model" / "config.json").read_text())
    assert saved["zero_shot"]["files_sha256"] == report.zero_shot["files_sha256"]  # the model's identity is recorded
    assert len(info["model_sha256"]) == 64

    hf = CLIPModel.from_pretrained(str(clip_dir)).eval()
    tok = CLIPTokenizer.from_pretrained(str(clip_dir))
    pre = json.loads((clip_dir / "preprocessor_config.json").read_text())
    mean, std = torch.tensor(pre["image_mean"]).view(1, 3, 1, 1), torch.tensor(pre["image_std"]).view(1, 3, 1, 1)
    paths = sorted(videos.glob("*.mp4"))
    with torch.no_grad():
        pooled = []
        for p in paths:
            frames = decode(p, DecodeSpec(num_frames=FRAMES, size=32)).frames  # the index's sampling
            x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - mean) / std
            f = torch.nn.functional.normalize(_features(hf.get_image_features(pixel_values=x)), dim=-1)
            pooled.append(torch.nn.functional.normalize(f.mean(0), dim=-1))
        gallery = torch.stack(pooled)
        ids = tok(QUERIES, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        text = torch.nn.functional.normalize(_features(hf.get_text_features(**ids)), dim=-1)
    want = (text @ gallery.T).double().numpy()

    searcher = Searcher.open(tmp_path / "idx")
    try:
        results = searcher.search(QUERIES, k=N_VIDEOS)
    finally:
        searcher.close()
    names = [p.name for p in paths]
    for q, hits in enumerate(results):
        got = {h.item.name: h.score for h in hits}
        assert sorted(got) == sorted(names)
        np.testing.assert_allclose([got[n] for n in names], want[q], atol=2e-5)
        order = np.argsort(-want[q], kind="stable")
        gaps = np.abs(np.diff(want[q][order]))
        if gaps.min() > 1e-4:  # no near-tie: the ranking itself must match
            assert [h.item.name for h in hits] == [names[i] for i in order]


def _top10(index: Path) -> tuple[list[str], list[list[tuple[str, float]]]]:
    searcher = Searcher.open(index)
    try:
        items = [i.key for i in searcher.items.all()]
        hits = searcher.search(QUERIES, k=10)
    finally:
        searcher.close()
    return items, [[(h.item.key, h.score) for h in row] for row in hits]


def _change_folder(videos: Path) -> None:
    """Two videos added, one changed (new content, same name), one deleted."""
    make_video(videos / "new_a.mp4", seed=100)
    make_video(videos / "new_b.mp4", seed=101)
    make_video(videos / "v03.mp4", seed=102)
    (videos / "v07.mp4").unlink()


def test_incremental_update_encodes_only_new_and_changed_and_equals_a_full_rebuild(clip_dir, tmp_path):
    videos = _folder(tmp_path / "videos")
    spec = ZeroShotSpec(str(clip_dir), num_frames=FRAMES)
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(QUERIES) + "\n")
    build_index(videos, spec, tmp_path / "idx", _opts(querybank=bank))
    _change_folder(videos)
    update = build_index(videos, spec, tmp_path / "idx", _opts(querybank=bank))
    assert (update.n_encoded, update.n_reused, update.n_dropped, update.n_items) == (3, 10, 1, 13)
    assert update.querybank_size == len(QUERIES)

    full = build_index(videos, spec, tmp_path / "full", _opts(querybank=bank, store=tmp_path / "fresh-frames"))
    assert (full.n_encoded, full.n_reused) == (13, 0)
    items_u, hits_u = _top10(tmp_path / "idx")
    items_f, hits_f = _top10(tmp_path / "full")
    assert items_u == items_f and len(set(items_u)) == 13
    assert not any(k.endswith("v07.mp4") for k in items_u)
    for row_u, row_f in zip(hits_u, hits_f, strict=True):
        assert [k for k, _ in row_u] == [k for k, _ in row_f]
        np.testing.assert_allclose([s for _, s in row_u], [s for _, s in row_f], atol=1e-5)
    for postproc in ("is", "dis"):  # the querybank statistics are the full rebuild's too
        s_u, s_f = Searcher.open(tmp_path / "idx"), Searcher.open(tmp_path / "full")
        try:
            a, b = s_u.search(QUERIES[:5], k=5, postproc=postproc), s_f.search(QUERIES[:5], k=5, postproc=postproc)
        finally:
            s_u.close(), s_f.close()
        assert [[h.item.key for h in r] for r in a] == [[h.item.key for h in r] for r in b]

    again = build_index(videos, spec, tmp_path / "idx", _opts(querybank=bank))  # nothing changed: nothing encoded
    assert (again.n_encoded, again.n_reused, again.n_dropped) == (0, 13, 0)


def test_another_sampling_re_encodes_everything(clip_dir, tmp_path):
    videos = _folder(tmp_path / "videos", n=3)
    build_index(videos, ZeroShotSpec(str(clip_dir), num_frames=FRAMES), tmp_path / "idx", _opts())
    again = build_index(videos, ZeroShotSpec(str(clip_dir), num_frames=FRAMES, fps=2.0), tmp_path / "idx", _opts())
    assert (again.n_encoded, again.n_reused) == (3, 0)
    searcher = Searcher.open(tmp_path / "idx")
    try:
        assert searcher.model.input_spec().fps == 2.0
        (hit,) = searcher.search(["a red circle"], k=1)[0][:1]
        assert hit.moment is not None and hit.moment.end_s <= 2.0
    finally:
        searcher.close()


def test_sigkill_during_an_update_keeps_the_old_index_and_a_rerun_completes_it(clip_dir, tmp_path, run_cli):
    videos = _folder(tmp_path / "videos", n=6)
    out = tmp_path / "idx"
    cmd = ["tvr", "index", str(videos), "--model", str(clip_dir), "--frames", str(FRAMES), "--out", str(out),
           "--workers", "1", "--quiet"]
    # only the killed update needs a process of its own; the first build and the rerun run in this one
    assert run_cli(*cmd[1:]).exit_code == 0
    before = json.loads((out / "index.json").read_text())
    for i in range(8):
        make_video(videos / f"added{i}.mp4", seed=200 + i)

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if [p for p in out.glob("data-*") if p.name != before["data_dir"]]:
            break  # the update has started writing its new generation
        time.sleep(0.005)
    assert proc.poll() is None, f"the update ended before the kill: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    searcher = Searcher.open(out)  # the previous index is intact and searchable
    try:
        assert len(searcher) == 6 and searcher.search(["a red circle"], k=3)[0]
    finally:
        searcher.close()
    done = run_cli(*cmd[1:], "--json")
    assert done.exit_code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["n_items"] == 14 and doc["n_reused"] == 6 and doc["n_encoded"] == 8
    searcher = Searcher.open(out)
    try:
        keys = [i.key for i in searcher.items.all()]
    finally:
        searcher.close()
    assert len(keys) == len(set(keys)) == 14
    assert len(list(out.glob("data-*"))) == 1  # what the killed run left behind is gone


def test_like_returns_the_video_itself_first_and_a_new_file_finds_its_twin(clip_dir, tmp_path):
    videos = _folder(tmp_path / "videos")
    build_index(videos, ZeroShotSpec(str(clip_dir), num_frames=FRAMES), tmp_path / "idx", _opts())
    searcher = Searcher.open(tmp_path / "idx")
    try:
        for name in ("v00.mp4", "v05.mp4", "v11.mp4"):
            hits = searcher.like(name, k=5)
            assert hits[0].item.name == name and hits[0].score == pytest.approx(1.0, abs=1e-5)
            assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        assert searcher.like("#4", k=1)[0].item.name == "v04.mp4"
        twin = make_video(tmp_path / "elsewhere" / "copy.mp4", seed=5)  # the same pixels as v05, not indexed
        assert searcher.find_item(str(twin)) is None
        hits = searcher.like(twin, k=3)
        assert hits[0].item.name == "v05.mp4" and hits[0].score == pytest.approx(1.0, abs=1e-4)
        described = searcher.describe("v05.mp4", QUERIES, k=4)
        assert [r for r, _, _ in described] == [1, 2, 3, 4]
        assert all(a[2] >= b[2] for a, b in zip(described, described[1:]))
        with pytest.raises(TvrError, match="neither an indexed video"):
            searcher.like("no-such-video.mp4")
    finally:
        searcher.close()


def test_bad_input_is_one_line_and_exit_2(clip_dir, tmp_path, run_cli):
    videos = _folder(tmp_path / "videos", n=3)
    not_clip = tmp_path / "bert"
    not_clip.mkdir()
    (not_clip / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    r = run_cli("index", str(videos), "--model", str(not_clip), "--out", str(tmp_path / "a"))
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and str(not_clip) in r.stderr

    assert run_cli("index", str(videos), "--model", str(clip_dir), "--frames", str(FRAMES), "--out",
                   str(tmp_path / "idx"), "--workers", "1", "--quiet").exit_code == 0
    other = tmp_path / "other_clip"
    make_hf_clip(other, seed=9)
    r = run_cli("index", str(videos), "--model", str(other), "--frames", str(FRAMES), "--out", str(tmp_path / "idx"))
    assert r.exit_code == 2 and "another model" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("search", str(tmp_path / "idx"), "--like", "nope.mp4")
    assert r.exit_code == 2 and "nope.mp4" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("index", str(videos), "--model", str(clip_dir), "--checkpoint", str(tmp_path), "--out", str(tmp_path / "b"))
    assert r.exit_code == 2 and "exactly one" in r.stderr
    r = run_cli("search", str(tmp_path / "idx"), "--describe", "v00.mp4", "--captions", str(tmp_path / "none.txt"))
    assert r.exit_code == 2 and "none.txt" in r.stderr
