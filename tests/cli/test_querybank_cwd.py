"""The default querybank (a run's training captions) does not depend on the folder a command runs from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # the shared tiny world/run
from train_testlib import TINY_CONFIG, cli_process, tiny_world


def _tvr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return cli_process(list(args), cwd=cwd)


def test_querybank_is_the_training_captions_from_any_folder(tmp_path_factory, tmp_path):
    world = tiny_world(tmp_path_factory)
    home = tmp_path / "project"
    shutil.copytree(world / "w", home / "w")
    (home / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    # trained with a relative manifest path, from the project folder
    r = _tvr("train", "w/all.jsonl", "-m", "clip4clip-meanp", "--config", "tiny.json", "--epochs", "1",
             "--out", "run", "--quiet", cwd=home)
    assert r.returncode == 0, r.stderr
    recorded = json.loads((home / "run" / "config.json").read_text())["training"]["manifest"]
    assert recorded == str((home / "w" / "all.jsonl").resolve())
    stored = json.loads((home / "run" / "querybank_captions.json").read_text())
    train_rows = [json.loads(x) for x in (home / "w" / "train.jsonl").read_text().splitlines() if x.strip()]
    assert sorted(stored) == sorted(row["caption"] for row in train_rows)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "w").rename(tmp_path / "moved")  # the training manifest is gone too: the run holds its captions
    sizes = []
    for cwd in (home, elsewhere):
        out = cwd / "idx"
        r = _tvr("index", str(tmp_path / "moved" / "test.jsonl"), "-c", str(home / "run"), "--out", str(out),
                 "--json", "--quiet", cwd=cwd)
        assert r.returncode == 0, r.stderr
        sizes.append(json.loads(r.stdout)["querybank_size"])
    assert sizes == [len(stored), len(stored)]
