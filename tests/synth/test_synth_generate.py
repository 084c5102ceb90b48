"""End to end: real files that decode to the scene, manifests, determinism, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import av
import numpy as np
import pytest
from synth_checks import classify_sound, dominant_colour

from tvr.io.manifest import read_manifest
from tvr.synth.generate import RenderConfig, generate
from tvr.synth.world import WorldConfig

RENDER = RenderConfig(size=64, seconds=2.0, fps=8.0)
# a small world with a large test split, so near-duplicate groups and held-out scenes exist
CONFIG = WorldConfig(videos=30, seed=7, val_fraction=0.1, test_fraction=0.5, other_container_fraction=0.3)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "world"
    generate(out, CONFIG, RENDER, workers=2)
    return out


def _scenes(out) -> list[dict]:
    return [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]


def _decode(path):
    with av.open(str(path)) as c:
        duration = c.duration / 1e6
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    audio, rate = None, 0
    with av.open(str(path)) as c:
        if c.streams.audio:
            rate = c.streams.audio[0].codec_context.sample_rate
            audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0]
    return frames, duration, audio, rate


def test_files_decode_to_their_scene(synth_dir):
    scenes = _scenes(synth_dir)
    assert len(scenes) == 30
    containers = set()
    for s in scenes:
        path = synth_dir / "videos" / f"{s['video_id']}{s['extension']}"
        frames, duration, audio, rate = _decode(path)
        containers.add(s["extension"])
        assert frames.shape == (16, 64, 64, 3)
        assert abs(duration - 2.0) < 0.15
        assert (audio is not None) == s["audio_stream"]
        if audio is not None:
            assert classify_sound(audio, rate) == s["sound"], s["video_id"]
        else:
            assert s["sound"] == "silence"
        if s["kind"] == "sequence":
            first, second = sorted(s["objects"], key=lambda o: o["t_start"])
            assert dominant_colour(frames[:8]) == first["colour"]
            assert dominant_colour(frames[8:]) == second["colour"]
        elif s["kind"] in ("single", "beside"):
            assert dominant_colour(frames) == s["objects"][0]["colour"]  # the single / the large one
    assert containers == {".mp4", ".webm", ".mkv"}


def test_manifests(synth_dir):
    all_m = read_manifest(synth_dir / "all.jsonl")
    parts = {name: read_manifest(synth_dir / f"{name}.jsonl") for name in ("train", "val", "test")}
    assert sum(len(m) for m in parts.values()) == len(all_m)
    for name, m in parts.items():
        assert m.splits() == {name}
        for e in m.entries:
            assert m.path_of(e).is_file()
    videos = {name: set(m.video_keys()) for name, m in parts.items()}
    assert not (videos["train"] & videos["test"]) and not (videos["train"] & videos["val"])
    assert [len(videos[n]) for n in ("train", "val", "test")] == [12, 3, 15]
    world = json.loads((synth_dir / "world.json").read_text())
    heldout = {tuple(p) for p in world["heldout_pairs"]}
    scenes = {f"videos/{s['video_id']}{s['extension']}": s for s in _scenes(synth_dir)}
    for e in parts["train"].entries:
        assert not any((o["colour"], o["shape"]) in heldout for o in scenes[e.video]["objects"])
    tags = [t for e in parts["test"].entries for t in e.extra["tags"]]
    assert {"order", "sound", "small", "heldout"} & set(tags)
    for e in parts["test"].entries:
        assert e.extra["kind"] in e.extra["tags"]
        if "group" in e.extra:
            assert {"order", "sound", "small"} & set(e.extra["tags"])


def test_same_seed_same_bytes(synth_dir, tmp_path, cpu_load):
    """Byte-identical files whatever --workers, also while other processes keep both cores busy."""
    again = tmp_path / "again"
    generate(again, CONFIG, RENDER, workers=1)
    for name in ("all.jsonl", "train.jsonl", "test.jsonl", "scenes.jsonl", "world.json"):
        assert (again / name).read_bytes() == (synth_dir / name).read_bytes(), name
    for path in sorted((synth_dir / "videos").iterdir()):
        assert (again / "videos" / path.name).read_bytes() == path.read_bytes(), path.name
    other = tmp_path / "other"
    generate(other, replace(CONFIG, seed=8, videos=4), RENDER, workers=1)
    assert (other / "all.jsonl").read_text() != (again / "all.jsonl").read_text()


def test_cli_json_and_errors(run_cli, tmp_path):
    out = tmp_path / "cli"
    res = run_cli("synth", out, "--videos", "5", "--seconds", "1", "--workers", "1", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["videos"] == 5 and doc["splits"]["train"]["videos"] == 3
    assert (out / "train.jsonl").is_file() and (out / "world.json").is_file()

    res = run_cli("synth", out, "--videos", "5")
    assert res.exit_code == 2 and "not empty" in res.stderr and str(out) in res.stderr
    res = run_cli("synth", out, "--videos", "5", "--seconds", "1", "--workers", "1", "--force")
    assert res.exit_code == 0, res.stderr

    for args, needle in (
        (("--videos", "0"), "--videos"),
        (("--videos", "3", "--size", "63"), "--size"),
        (("--videos", "3", "--workers", "0"), "--workers"),
        (("--videos", "3", "--seconds", "0"), "--seconds"),
    ):
        res = run_cli("synth", tmp_path / "fresh", *args)
        assert res.exit_code == 2, args
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "afile").write_text("x")
    res = run_cli("synth", tmp_path / "afile", "--videos", "2")
    assert res.exit_code == 2 and "not a directory" in res.stderr
