"""Weight averaging (`tvr soup`): the mean against a hand computation, runs fine-tuned by the real
trainer from one start, and what is refused (other starts, methods, configs; one line, exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))  # the shared tiny world/run
from train_testlib import METHOD, one_line_error, tiny_run, tiny_world  # noqa: E402

from tvr.models.soup import average_states  # noqa: E402


def test_average_is_the_weighted_mean_and_integer_tensors_must_agree():
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.float16), "n": torch.tensor([3])}
    b = {"w": torch.tensor([5.0, -2.0]), "h": torch.tensor([3.0], dtype=torch.float16), "n": torch.tensor([3])}
    got = average_states([a, b], (1.0, 3.0))
    assert torch.equal(got["w"], torch.tensor([4.0, -1.0]))  # (1·a + 3·b) / 4
    assert got["h"].dtype == torch.float16 and torch.equal(got["h"], torch.tensor([2.5], dtype=torch.float16))
    assert torch.equal(got["n"], torch.tensor([3]))
    assert torch.equal(average_states([a, b])["w"], torch.tensor([3.0, 0.0]))
    with pytest.raises(ValueError, match="integer tensor that differs"):
        average_states([a, {**b, "n": torch.tensor([4])}])
    steps = average_states([{"bn.num_batches_tracked": torch.tensor(7)}, {"bn.num_batches_tracked": torch.tensor(9)}])
    assert steps["bn.num_batches_tracked"].item() == 9  # a step counter, not a value: the longest run's
    with pytest.raises(ValueError, match=r"w: run 2 holds \(3,\)"):
        average_states([a, {**b, "w": torch.zeros(3)}])
    with pytest.raises(ValueError, match="first difference: 'h'"):
        average_states([a, {k: v for k, v in b.items() if k != "h"}])
    with pytest.raises(ValueError, match="finite and > 0"):
        average_states([a, b], (1.0, 0.0))
    with pytest.raises(ValueError, match="at least two"):
        average_states([a])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The shared tiny run (the start), and two runs fine-tuned from it by `tvr train` with seeds 1 and 2."""
    from tvr.cli.main import main

    world = tiny_world(tmp_path_factory)
    start = tiny_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("soup")
    runs = []
    for seed in (1, 2):
        config = root / f"from_start_{seed}.json"
        config.write_text(json.dumps({"preset": "tiny", "train": {"batch_size": 4, "workers": 1, "epochs": 1,
                                                                  "init": str(start), "seed": seed}}))
        run = root / f"tuned{seed}"
        assert main(["train", str(world / "w" / "all.jsonl"), "--method", METHOD, "--config", str(config),
                     "--out", str(run), "--quiet"]) == 0
        runs.append(run)
    return world, start, runs


def test_soup_of_runs_tuned_from_one_start_holds_their_weighted_mean(run_cli, tuned, tmp_path):
    from safetensors.torch import load_file

    world, _, (b, c) = tuned
    out = tmp_path / "soup"
    r = run_cli("soup", b, c, "-o", out, "--weights", "1,3", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["method"] == METHOD and [m["share"] for m in doc["members"]] == [0.25, 0.75]
    assert all(m["training"]["init"] == {"path": str(tuned[1])} for m in doc["members"])
    wb, wc, ws = (load_file(str(p / "model.safetensors")) for p in (b, c, out))
    assert set(ws) == set(wb)
    differ = 0
    for name, t in ws.items():
        want = (wb[name].double() + 3 * wc[name].double()) / 4 if t.is_floating_point() else wb[name]
        assert torch.allclose(t.double(), want, atol=1e-6), name
        differ += not torch.equal(wb[name], wc[name])
    assert differ > 10  # the two seeds really ended in different weights
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == METHOD and len(config["soup_of"]) == 2
    assert json.loads((out / "querybank_captions.json").read_text()) == json.loads((b / "querybank_captions.json").read_text())
    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", out, "--json")  # an ordinary checkpoint
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["method"] == METHOD and 0 <= json.loads(r.stdout)["t2v"]["R@1"] <= 100
    one_line_error(run_cli("soup", b, c, "-o", out), "not empty", "--force")
    assert run_cli("soup", b, c, "-o", out, "--force").exit_code == 0


def test_runs_from_other_starts_methods_or_configs_are_refused(run_cli, tuned, tmp_path):
    from tvr.models.registry import load_model, save_model

    _, start, (b, _) = tuned
    one_line_error(run_cli("soup", start, b, "-o", tmp_path / "x"), "started from other weights", "init")
    r = run_cli("soup", start, b, "-o", tmp_path / "any", "--any-start")  # the user's call
    assert r.exit_code == 0, r.stderr
    one_line_error(run_cli("soup", b, "-o", tmp_path / "x"), "at least two runs")
    one_line_error(run_cli("soup", b, b, "-o", tmp_path / "x", "--weights", "1,-1"), "--weights", "> 0")
    one_line_error(run_cli("soup", b, start, "-o", b / "inside"), "write the soup elsewhere")

    bare = tmp_path / "bare"  # weights saved without a training record
    save_model(load_model(b), bare)
    one_line_error(run_cli("soup", b, bare, "-o", tmp_path / "x"), "records no training start", "--any-start")

    import dataclasses

    from tvr.models.registry import build, create
    model = load_model(b)
    wider = build(METHOD, dataclasses.replace(model.config, temporal_layers=model.config.temporal_layers + 1))
    save_model(wider, tmp_path / "wider")
    one_line_error(run_cli("soup", b, tmp_path / "wider", "-o", tmp_path / "x"), "model config differs")
    other = create("clip4clip-meanp", **{k: getattr(model.config, k) for k in ("num_frames", "image_size")},
                   backbone=dataclasses.asdict(model.config.backbone))
    save_model(other, tmp_path / "meanp")
    one_line_error(run_cli("soup", b, tmp_path / "meanp", "-o", tmp_path / "x"), "'clip4clip-meanp' run")
