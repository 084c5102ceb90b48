"""`tvr train` with soup members (`train.soup`, MMT's default): the members trained from one start,
their exact average as the run's model, resume after a kill, and the recipes that are refused."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file
from train_testlib import METHOD, cli_process, cli_start, committed_epoch, one_line_error, tiny_run, tiny_world

from tvr.models.soup import average_states, start_of

EPOCHS = 3
MEMBERS = [{}, {"seed_offset": 1}, {"lr": 0.002}]


def soup_config(path, start):
    path.write_text(json.dumps({"preset": "tiny", "train": {"batch_size": 4, "workers": 1, "epochs": EPOCHS, "seed": 3,
                                                            "init": str(start), "soup": MEMBERS}}))
    return path


@pytest.fixture(scope="module")
def souped(tmp_path_factory):
    """(world, the start, its soup config, a finished uninterrupted soup run of three members)."""
    from tvr.cli.main import main

    world = tiny_world(tmp_path_factory)
    start = tiny_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("soup-train")
    config = soup_config(root / "soup.json", start)
    run = root / "run"
    assert main(["train", str(world / "w" / "all.jsonl"), "--method", METHOD, "--config", str(config),
                 "--out", str(run), "--quiet"]) == 0
    return world, start, config, run


def test_the_run_holds_the_exact_average_of_members_trained_from_one_start(souped, run_cli):
    world, start, _, run = souped
    members = [run / "members" / str(i) for i in range(len(MEMBERS))]
    recipes = [json.loads((m / "trainer_state.json").read_text())["train"] for m in members]
    assert [r["seed"] for r in recipes] == [3, 4, 3] and [r["lr"] for r in recipes] == [1e-3, 1e-3, 2e-3]
    assert all(r["split_seed"] == 3 and r["soup"] == [] and r["epochs"] == EPOCHS for r in recipes)
    states = [load_file(str(m / "model.safetensors")) for m in members]
    assert all(not torch.equal(states[0][k], s[k]) for s in states[1:] for k in ["logit_scale"])  # three different models
    want, got = average_states(states), load_file(str(run / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert not (members[0] / "frames").exists() and (run / "frames").is_dir()  # one decoded store for all

    config = json.loads((run / "config.json").read_text())
    assert [m["share"] for m in config["soup_of"]] == [round(1 / 3, 6)] * 3
    assert config["training"]["init"] == {"path": str(start)} and config["training"]["train"]["soup"] == MEMBERS
    member_doc = json.loads((members[1] / "config.json").read_text())
    assert start_of(config) == start_of(member_doc)  # a soup of soups shares the start without --any-start
    assert (run / "querybank_captions.json").read_text() == (members[0] / "querybank_captions.json").read_text()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(x.get("member"), x.get("epoch")) for x in lines[:-1]] == [(i, e) for i in range(3) for e in range(1, EPOCHS + 1)]
    assert lines[-1]["soup"] == 3 and 0 <= lines[-1]["val"]["t2v"]["R@1"] <= 100

    r = run_cli("eval", world / "w" / "all.jsonl", "--checkpoint", run, "--json")  # an ordinary checkpoint
    assert r.exit_code == 0, r.stderr
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", METHOD, "--out", run, "--quiet"),
                   "already holds a training run", "--resume")
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", "clip4clip-meanp", "--out", run, "--resume",
                           "--quiet"), "'clip4clip-seqtransf' soup")


def test_a_soup_killed_inside_a_member_resumes_to_the_same_average(souped, tmp_path):
    world, _, config, full = souped
    cut = tmp_path / "cut"
    proc = cli_start(["train", str(world / "w" / "all.jsonl"), "--method", METHOD, "--config", str(config), "--out",
                      str(cut), "--quiet"])
    deadline = time.monotonic() + 240
    while committed_epoch(cut / "members" / "1") < 1 and proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()  # SIGKILL
    proc.join()
    killed_at = committed_epoch(cut / "members" / "1")
    assert 1 <= killed_at < EPOCHS, f"kill landed at member 2's epoch {killed_at}; the run was too fast to interrupt"
    assert not (cut / "model.safetensors").exists() and not (cut / "members" / "2").exists()
    first = (cut / "members" / "0" / "trainer_state.json").read_bytes()

    r = cli_process(["train", str(world / "w" / "all.jsonl"), "--method", METHOD, "--out", str(cut), "--resume", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert (cut / "members" / "0" / "trainer_state.json").read_bytes() == first  # the finished member is not retrained
    a, b = load_file(str(full / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("members, needles", [
    ([{}, {"seed_offset": 1}], ["soup[1].seed_offset", "train.init", '"soup": []']),  # no start to share
    ([{}, {"init": "elsewhere"}], ["soup[1]", "'init' cannot differ"]),
    ([{}, {"sound_negatives": 1.0}], ["soup[1]", "'sound_negatives' cannot differ"]),  # it picks the pretraining
    ([{}, {"epoch": 2}], ["soup[1]", "'epoch'"]),
    ([{}, {"lr": "fast"}], ["train.soup[1].lr", "expected a finite number"]),
    ([{}, {"seed_offset": -1}], ["seed_offset", ">= 0"]),
    ([{}], ["at least two members"]),
    ([{}, 3], ["soup[1] must be an object"]),
])
def test_recipes_that_cannot_make_a_soup_are_refused_before_training(run_cli, tmp_path_factory, tmp_path, members, needles):
    world = tiny_world(tmp_path_factory)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"preset": "tiny", "train": {"workers": 1, "soup": members}}))
    out = tmp_path / "run"
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", METHOD, "--config", config, "--out", out),
                   str(config), *needles)
    assert not out.exists()


def test_a_reranker_is_not_trained_as_a_soup(run_cli, tmp_path_factory, tmp_path):
    world, start = tiny_world(tmp_path_factory), tiny_run(tmp_path_factory)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"preset": "tiny", "train": {"workers": 1, "soup": [{}, {"lr": 0.002}]}}))
    one_line_error(run_cli("train", world / "w" / "all.jsonl", "--method", "crosstvr", "--first-stage", start,
                           "--config", config, "--out", tmp_path / "rr"), "train.soup", "re-ranker")


def test_mmt_default_is_a_three_member_soup_from_its_one_pretrained_start(tmp_path):
    from tvr.train.presets import resolve

    recipe = resolve(None, "mmt").train
    members = [recipe.member(i) for i in range(len(recipe.soup))]
    assert [(m.seed, m.order_negatives) for m in members] == [(0, 1.0), (1, 0.5), (0, 0.0)]
    assert len({(m.init, m.init_videos, m.init_epochs, m.sound_negatives, m.order_streams) for m in members}) == 1
    assert all(not resolve(None, m).train.soup for m in ("clip4clip-meanp", "clip4clip-seqtransf", "ts2net", "prost"))
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"train": {"soup": []}}))
    assert resolve(single, "mmt").train.soup == ()  # one MMT run, as before


def test_a_soup_trains_under_two_gloo_processes(souped, tmp_path):
    """`--ddp 2` (torchrun, gloo, started here): every member trains on both processes, rank 0 writes
    the members and their exact average once."""
    world, _, config, _ = souped
    run = tmp_path / "ddp"
    r = cli_process(["train", str(world / "w" / "all.jsonl"), "--method", METHOD, "--config", str(config), "--epochs", "1",
                     "--out", str(run), "--ddp", "2", "--quiet"])
    assert r.returncode == 0, r.stderr[-2000:]
    members = [run / "members" / str(i) for i in range(len(MEMBERS))]
    for m in members:
        lines = [json.loads(x) for x in (m / "metrics.jsonl").read_text().splitlines()]
        assert [(x["epoch"], x["processes"]) for x in lines] == [(1, 2)]
    want = average_states([load_file(str(m / "model.safetensors")) for m in members])
    got = load_file(str(run / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("member") for x in lines] == [0, 1, 2, None] and lines[-1]["soup"] == 3
