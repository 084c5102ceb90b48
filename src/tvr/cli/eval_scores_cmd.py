"""`tvr eval-scores`: metrics and hubness of a precomputed query×gallery score matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    app.command("eval-scores", cls=PlainFlagsCommand)(eval_scores)


def eval_scores(
    scores: Optional[Path] = typer.Argument(None, help="query×gallery score matrix (.npy, 2-D, float)."),
    gt: Optional[Path] = typer.Option(
        None, "--gt", help="JSON list, one entry per query row: its gallery column or a list of columns."
    ),
    postproc: str = typer.Option(
        "none", "--postproc", help="none | is | dis | csls | gc | cent (need --querybank) | dsl | tvh (transductive)."
    ),
    querybank: Optional[Path] = typer.Option(
        None,
        "--querybank",
        help="querybank×gallery scores (.npy), same scale as SCORES; or a saved QueryBank (.safetensors).",
    ),
    beta: float = typer.Option(20.0, "--beta", help="IS/DIS inverse temperature (20 on cosine scores)."),
    k: Optional[int] = typer.Option(None, "--k", help="DIS activation top-k [1] or CSLS neighbours [10]."),
    temperature: float = typer.Option(
        1.0, "--temperature", help="DSL softmax temperature τ [1 on logit-scaled scores]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metric JSON on stdout."),
    example: Optional[Path] = typer.Option(
        None,
        "--example",
        help="Write a synthetic example (scores.npy, gt.json, querybank.npy with a planted hub) here and exit.",
    ),
    force: bool = typer.Option(False, "--force", help="With --example: overwrite files of those names."),
) -> None:
    """Evaluate a precomputed query×gallery score matrix: recalls both ways, hubness before/after post-processing."""
    from tvr.cli.output import print_json
    from tvr.errors import TvrError
    from tvr.progress import stderr_console

    console = stderr_console()
    if example is not None:
        if scores is not None or gt is not None:
            raise TvrError("--example writes an example and exits; do not pass SCORES or --gt with it")
        from tvr.eval.example import write_example

        paths = write_example(example, force=force)
        console.print(f"wrote {paths['scores']}, {paths['gt']}, {paths['querybank']}")
        console.print(
            f"try: tvr eval-scores {paths['scores']} --gt {paths['gt']} --postproc is --querybank {paths['querybank']}",
            soft_wrap=True,
        )
        if as_json:
            print_json({k_: str(v) for k_, v in paths.items()})
        return
    if scores is None:
        raise TvrError("missing SCORES.npy (or use --example DIR to generate one)")
    if gt is None:
        raise TvrError("missing option --gt GT.json")

    from tvr.eval.report import format_report_table, score_report
    from tvr.postproc import get_postproc

    entry = get_postproc(postproc)  # unknown names fail before any file is read
    scores_qg = _load_matrix(scores, "scores")
    truth = _load_gt(gt)
    bank = None
    if querybank is not None:
        bank = _load_querybank(querybank, scores_qg.shape[1])
    elif entry.needs_querybank:
        raise TvrError(f"--postproc {postproc} needs --querybank QB.npy (querybank×gallery scores)")
    try:
        report = score_report(
            scores_qg, truth, postproc=postproc, querybank_bg=bank, beta=beta, k=k, temperature=temperature
        )
    except TvrError as exc:
        raise TvrError(f"{exc} ({scores.name}, {gt.name})") from None
    console.print(format_report_table(report))
    if as_json:
        print_json(report)


def _load_matrix(path: Path, what: str):
    import numpy as np

    if not path.is_file():
        raise _err(f"{what} file {path} does not exist")
    # np.load takes any file without the .npy magic for a pickle and says "load it unsafely using
    # allow_pickle"; tvr never loads pickles, so look at the first bytes and say what the file is.
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise _err(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):
        raise _err(f"{path}: not a .npy array (a zip/.npz archive; save one array with numpy.save)")
    if not head.startswith(np.lib.format.MAGIC_PREFIX):
        raise _err(f"{path}: not a .npy array (cannot read a .npy header; the file starts with {head!r})")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _err(f"{path}: not a .npy array of numbers (it holds pickled Python objects)") from None
        raise _err(f"{path}: not a .npy array (damaged or truncated: {exc})") from None
    except (OSError, EOFError) as exc:
        raise _err(f"{path}: not a .npy array (damaged or truncated: {exc})") from None
    if arr.ndim != 2:
        raise _err(f"{what} in {path} must be a 2-D matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise _err(f"{what} in {path} is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise _err(f"{what} in {path} must hold numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        q, g = np.argwhere(bad)[0]
        raise _err(f"{what} in {path} contains a non-finite value ({arr[q, g]}) at row {q}, column {g}")
    return arr


def _load_gt(path: Path):
    if not path.is_file():
        raise _err(f"ground-truth file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _err(f"ground-truth file {path} is not valid JSON: {exc}") from None


def _load_querybank(path: Path, n_gallery: int):
    if path.suffix == ".safetensors":
        from tvr.postproc.querybank import QueryBank

        return QueryBank.load(path, n_gallery=n_gallery)
    bank = _load_matrix(path, "querybank")
    if bank.shape[1] != n_gallery:
        raise _err(f"querybank in {path} covers {bank.shape[1]} gallery items but the scores have {n_gallery} columns")
    return bank


def _err(message: str):
    from tvr.errors import TvrError

    return TvrError(message)
