"""`tvr pretrain --help` spells out the recipes' defaults (the CLI does not import the training
modules to start); they must be the defaults the builds actually use."""

from __future__ import annotations

import re

import typer

from tvr.cli.main import build_app
from tvr.train.object_pretrain import ObjectPretrainConfig
from tvr.train.pretrain import PretrainConfig


def pretrain_options() -> dict[str, str]:
    command = typer.main.get_command(build_app()).commands["pretrain"]
    return {p.name: p.help or "" for p in command.params}


def stated_default(help_text: str) -> str:
    found = re.search(r"\(default ([^)]+)\)\.$", help_text)
    assert found, f"no '(default …)' at the end of {help_text!r}"
    return found.group(1)


def test_the_backbone_options_state_the_backbone_recipe_defaults():
    options = pretrain_options()
    backbone = PretrainConfig()
    for name in ("steps", "batch_size", "lr", "image_size", "patch_size", "seed", "foils", "beside", "twins", "attributes", "distill", "teacher_steps"):
        assert float(stated_default(options[name])) == float(getattr(backbone, name)), name


def test_the_objects_option_states_the_objects_recipe_defaults():
    text = pretrain_options()["objects"]
    found = re.search(r"Takes ((?:--[\w-]+ ?)+) \(defaults ([^)]+)\)", text)
    assert found, text
    names = [flag.removeprefix("--").replace("-", "_") for flag in found.group(1).split()]
    values = [float(v) for v in found.group(2).split(", ")]
    recipe = ObjectPretrainConfig()
    assert names[0] == "out" and len(values) == len(names) - 1  # --out has no default value to state
    assert {n: v for n, v in zip(names[1:], values)} == {n: float(getattr(recipe, n)) for n in names[1:]}
