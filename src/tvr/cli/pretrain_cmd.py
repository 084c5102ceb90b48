"""`tvr pretrain` — build the synthetic CLIP backbone the default presets fine-tune from, (--method)
a method pretrained on synthetic videos (`train.init: "synthetic-videos"`), or (--objects) the CNN of
MMT's `objects` expert."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tvr.cli.output import PlainFlagsCommand


def register(app: typer.Typer) -> None:
    """Adds `tvr pretrain` to `app`."""

    @app.command("pretrain", cls=PlainFlagsCommand)
    def pretrain_command(
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the Hugging Face CLIPModel (default: the user cache, where `tvr train` looks).")] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps (default 1200).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Stills per step (default 256).")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (default 1e-3).")] = None,
        image_size: Annotated[int | None, typer.Option("--image-size", help="Image side in pixels (default 64).")] = None,
        patch_size: Annotated[int | None, typer.Option("--patch-size", help="ViT patch side (default 16).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default 0).")] = None,
        foils: Annotated[float | None, typer.Option("--foils", help="Fraction of each batch whose caption also enters with one shape changed, as a hard negative (default 0).")] = None,
        beside: Annotated[float | None, typer.Option("--beside", help="Fraction of stills holding a small object right beside a large one, captioned so (default 0).")] = None,
        twins: Annotated[float | None, typer.Option("--twins", help="Fraction of each batch made of twin pairs: a still and the same still with one shape changed, each with its caption (default 0).")] = None,
        attributes: Annotated[float | None, typer.Option("--attributes", help="Weight of the attribute loss: a linear read-out of the image embedding learns which (colour, shape, size) each still shows (default 0).")] = None,
        distill: Annotated[float | None, typer.Option("--distill", help="Weight of dense distillation: each patch token learns to predict the `objects` expert's CNN feature map under it; the CNN is built first if missing, and 0 turns it off (default 5).")] = None,
        teacher_steps: Annotated[int | None, typer.Option("--teacher-steps", help="Steps of the distillation teacher's build, with the default's share of warmup steps (60 of 1,200); 0 builds the `objects` expert's default CNN, the one MMT reads (default 0).")] = None,
        method: Annotated[str | None, typer.Option("--method", "-m", help="Also pretrain this method on synthetic videos, as `tvr train` does on first use when its train.init is \"synthetic-videos\" (the default of MMT, seqTransf, TS2-Net and ProST). Its recipe and backbone come from the preset or --config.")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="With --method: the `tvr train --config` file whose recipe to pretrain.")] = None,
        objects: Annotated[bool, typer.Option("--objects", help="Build the `objects` expert's CNN (named \"synthetic-objects\" in model configs) instead of the backbone: it learns to name the (colour, shape, size) objects of rendered stills. Takes --out --steps --batch-size --lr --image-size --seed --beside (defaults 1200, 128, 2e-3, 64, 0, 0.5).")] = False,
        force: Annotated[bool, typer.Option("--force", help="Rebuild even if the folder exists (it is replaced only when the new one is finished).")] = False,
        where: Annotated[bool, typer.Option("--where", help="Print the folder (the backbone's, or with --method or --objects theirs) and whether it is built; build nothing.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ) -> None:
        """Pretrain the CLIP-layout backbone on synthetic stills and save it as a Hugging Face CLIPModel folder.

        Without options this builds the default backbone into the cache (about 23 min on 2 cores, after
        the 10 of its distillation teacher, the objects CNN, where this machine has none);
        `tvr train` builds the same one on first use. Options change the recipe, so the result lands
        in its own cache folder, or in --out. --method builds a method pretrained on synthetic videos,
        --objects the CNN of MMT's `objects` expert (about 10 min).
        """
        import json

        from tvr.errors import TvrError
        from tvr.train.presets import override
        from tvr.train.pretrain import INFO_FILE, PretrainConfig, backbone_dir, ensure_backbone

        values = {"steps": steps, "batch_size": batch_size, "lr": lr, "image_size": image_size,
                  "patch_size": patch_size, "seed": seed, "foils": foils, "beside": beside, "twins": twins,
                  "attributes": attributes, "distill": distill, "teacher_steps": teacher_steps}
        if objects:
            _pretrain_objects(out, values, method=method, config=config, force=force, where=where, json_out=json_out,
                              quiet=quiet)
            return
        if method is not None:
            given = ["--out"] * (out is not None) + [f"--{k.replace('_', '-')}" for k, v in values.items() if v is not None]
            _pretrain_method(method, config, values_given=given + ["--force"] * force, where=where, json_out=json_out,
                             quiet=quiet)
            return
        if config is not None:
            raise TvrError("--config is only read with --method")
        cfg = override(PretrainConfig(), **values)
        target = out if out is not None else backbone_dir(cfg)
        if where:
            _print_where(target, (target / INFO_FILE).is_file(), json_out)
            return
        result = _rebuilt(target, force, lambda: ensure_backbone(cfg, out=target, progress=not quiet))
        info = json.loads((result.path / INFO_FILE).read_text(encoding="utf-8"))
        held = info.get("heldout_stills", {})
        _report(result, info, f"{info['steps']} steps, {info.get('build_wall_s', 0):.0f} s wall / "
                f"{info.get('build_cpu_s', 0):.0f} CPU-s; held-out stills image→text R@1 {held.get('i2t_R@1', '–')}",
                json_out=json_out, quiet=quiet, steps=result.steps)


def _rebuilt(target: Path, force: bool, build: Callable[[], Any]) -> Any:
    """`build()`, after moving an existing `target` aside when `force` (put back if the build fails)."""
    import shutil

    if not (force and target.exists()):
        return build()
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    try:
        result = build()
    except BaseException:
        if not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return result


def _pretrain_objects(out: Path | None, values: dict[str, Any], *, method: str | None, config: Path | None, force: bool,
                      where: bool, json_out: bool, quiet: bool) -> None:
    import json

    from tvr.errors import TvrError
    from tvr.train.object_pretrain import INFO_FILE, ObjectPretrainConfig, ensure_objects, objects_dir
    from tvr.train.presets import override

    taken = {"steps", "batch_size", "lr", "image_size", "seed", "beside"}
    refused = [f"--{k.replace('_', '-')}" for k, v in values.items() if v is not None and k not in taken]
    refused += ["--method"] * (method is not None) + ["--config"] * (config is not None)
    if refused:
        raise TvrError(f"{refused[0]} is not taken with --objects")
    cfg = override(ObjectPretrainConfig(), **{k: v for k, v in values.items() if k in taken})
    target = out if out is not None else objects_dir(cfg)
    if where:
        _print_where(target, (target / INFO_FILE).is_file(), json_out)
        return
    result = _rebuilt(target, force, lambda: ensure_objects(cfg, out=target, progress=not quiet))
    info = json.loads((result.path / INFO_FILE).read_text(encoding="utf-8"))
    held = info.get("heldout_stills", {})
    _report(result, info, f"{info['steps']} steps, {info.get('build_wall_s', 0):.0f} s wall / "
            f"{info.get('build_cpu_s', 0):.0f} CPU-s; held-out stills: small shapes {held.get('shape_small', '–')} %, "
            f"large {held.get('shape_large', '–')} %", json_out=json_out, quiet=quiet)


def _pretrain_method(method: str, config: Path | None, *, values_given: list[str], where: bool, json_out: bool,
                     quiet: bool) -> None:
    from tvr.errors import TvrError
    from tvr.train.video_pretrain import INFO_FILE, ensure_method_init, info, method_init

    if values_given:
        raise TvrError(f"{values_given[0]} is not taken with --method: the recipe comes from the preset or --config")
    if where:
        target = method_init(method, config).folder()
        _print_where(target, (target / INFO_FILE).is_file(), json_out)
        return
    result = ensure_method_init(method, config, progress=not quiet)
    doc = info(result.path)
    _report(result, doc, f"{method} on {doc['videos']} synthetic videos, kept epoch {doc['kept_epoch']} of "
            f"{doc['epochs']}, {doc['wall_s']:.0f} s wall / {doc['cpu_s']:.0f} CPU-s", json_out=json_out, quiet=quiet)


def _report(result: Any, info: dict[str, Any], detail: str, *, json_out: bool, quiet: bool, **extra: Any) -> None:
    """A finished build: its folder, whether this call built it, its cost and `info` as JSON on stdout,
    or one line on stderr ("built: FOLDER  (DETAIL)")."""
    from tvr.cli.output import print_json
    from tvr.progress import stderr_console

    if json_out:
        print_json({"path": str(result.path), "built": result.built, **extra, "wall_s": round(result.wall_s, 1),
                    "cpu_s": round(result.cpu_s, 1), "info": info})
    elif not quiet:
        stderr_console().print(f"{'built' if result.built else 'already built'}: {result.path}  ({detail})")


def _print_where(target: Path, built: bool, json_out: bool) -> None:
    """`--where`: the folder and whether it is built, as JSON or one line."""
    from tvr.cli.output import print_json

    print_json({"path": str(target), "built": built}) if json_out else print(f"{target} ({'built' if built else 'not built'})")
