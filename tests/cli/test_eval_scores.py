"""`tvr eval-scores`: the planted-hub acceptance test, JSON shape, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvr.eval.example import write_example


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """1,000 captions × 1,000 videos with a planted hub, plus a 5,000-query bank from the same distribution."""
    return write_example(tmp_path_factory.mktemp("example"))


def _report(run_cli, *args: str) -> dict:
    r = run_cli("eval-scores", *args, "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_planted_hub_is_flattened_by_inverted_softmax(run_cli, example) -> None:
    raw = _report(run_cli, example["scores"], "--gt", example["gt"])
    qbn = _report(
        run_cli, example["scores"], "--gt", example["gt"], "--postproc", "is", "--querybank", example["querybank"]
    )
    assert raw["n_queries"] == raw["n_gallery"] == 1000
    assert qbn["postproc"] == "is" and qbn["transductive"] is False
    assert qbn["hubness_before"] == raw["hubness"]
    assert qbn["hubness"]["skewness"] < raw["hubness"]["skewness"] - 5
    assert qbn["hubness"]["max_occurrence"] < raw["hubness"]["max_occurrence"]
    assert qbn["t2v"]["R@1"] > raw["t2v"]["R@1"] + 5


def test_json_has_design_keys_and_transductive_label(run_cli, example) -> None:
    rep = _report(run_cli, example["scores"], "--gt", example["gt"], "--postproc", "dsl")
    for key in ("t2v", "v2t", "hubness", "hubness_before", "postproc", "transductive", "n_queries", "n_gallery"):
        assert key in rep
    assert set(rep["t2v"]) == {"R@1", "R@5", "R@10", "R@50", "MdR", "MnR", "rsum"}
    assert set(rep["hubness"]) == {"skewness", "max_occurrence", "never_retrieved"}
    assert rep["transductive"] is True
    r = run_cli("eval-scores", example["scores"], "--gt", example["gt"], "--postproc", "tvh")
    assert r.exit_code == 0 and "transductive" in r.stderr and r.stdout == ""


def test_small_matrix_hand_checked(run_cli, tmp_path) -> None:
    np.save(tmp_path / "s.npy", np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.8], [0.5, 0.5, 0.0]]))
    (tmp_path / "gt.json").write_text("[0, [1, 2], 1]")
    rep = _report(run_cli, tmp_path / "s.npy", "--gt", tmp_path / "gt.json")
    # ranks: q0 → 1, q1 → 1 (column 2), q2 → 1.5 (tied with column 0)
    assert rep["t2v"]["R@1"] == pytest.approx(200 / 3) and rep["t2v"]["MnR"] == pytest.approx(3.5 / 3)


def test_example_flag_writes_the_three_files(run_cli, tmp_path) -> None:
    r = run_cli("eval-scores", "--example", tmp_path / "ex")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["gt.json", "querybank.npy", "scores.npy"]
    assert "tvr eval-scores" in r.stderr


def _write(tmp_path, name: str, arr) -> str:
    path = tmp_path / name
    np.save(path, np.asarray(arr))
    return str(path)


def _bad_cases(tmp_path):
    good = _write(tmp_path, "good.npy", np.eye(4))
    gt = tmp_path / "gt.json"
    gt.write_text("[0, 1, 2, 3]")
    nan = np.eye(4)
    nan[1, 2] = np.nan
    inf = np.eye(4)
    inf[3, 0] = np.inf
    short_gt = tmp_path / "short.json"
    short_gt.write_text("[0, 1, 2]")
    range_gt = tmp_path / "range.json"
    range_gt.write_text("[0, 1, 2, 4]")
    broken_gt = tmp_path / "broken.json"
    broken_gt.write_text("[0, 1,")
    empty_bank = _write(tmp_path, "e.npy", np.zeros((0, 4)))
    narrow_bank = _write(tmp_path, "b.npy", np.zeros((5, 3)))
    return {
        "NaN": ([_write(tmp_path, "nan.npy", nan), "--gt", gt], "non-finite"),
        "inf": ([_write(tmp_path, "inf.npy", inf), "--gt", gt], "non-finite"),
        "1-D": ([_write(tmp_path, "vec.npy", np.ones(4)), "--gt", gt], "2-D"),
        "3-D": ([_write(tmp_path, "cube.npy", np.ones((2, 2, 2))), "--gt", gt], "2-D"),
        "gt rows": ([good, "--gt", short_gt], "3 entries"),
        "gt range": ([good, "--gt", range_gt], "out of range"),
        "gt json": ([good, "--gt", broken_gt], "not valid JSON"),
        "empty bank": ([good, "--gt", gt, "--postproc", "is", "--querybank", empty_bank], "empty"),
        "bank size": ([good, "--gt", gt, "--postproc", "dis", "--querybank", narrow_bank], "3 gallery items"),
        "no bank": ([good, "--gt", gt, "--postproc", "csls"], "needs --querybank"),
        "missing scores": ([tmp_path / "nope.npy", "--gt", gt], "does not exist"),
        "missing gt": ([good, "--gt", tmp_path / "nope.json"], "does not exist"),
        "missing bank": ([good, "--gt", gt, "--postproc", "is", "--querybank", tmp_path / "no.npy"], "does not exist"),
        "not npy": ([str(gt), "--gt", gt], "cannot read"),
        "unknown postproc": ([good, "--gt", gt, "--postproc", "qbn"], "unknown post-processor"),
        "no gt": ([good], "--gt"),
        "bad k": ([good, "--gt", gt, "--postproc", "csls", "--querybank", good, "--k", "0"], "k must"),
    }


CASES = ["NaN", "inf", "1-D", "3-D", "gt rows", "gt range", "gt json", "empty bank", "bank size", "no bank",
         "missing scores", "missing gt", "missing bank", "not npy", "unknown postproc", "no gt", "bad k"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2(run_cli, tmp_path, case: str) -> None:
    args, needle = _bad_cases(tmp_path)[case]
    r = run_cli("eval-scores", *args)
    assert r.exit_code == 2, (case, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
