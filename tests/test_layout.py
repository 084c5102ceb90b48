"""The package's layers follow the data flow: a stage imports only itself and the stages below it.

Read from the source with `ast` (every import, including the ones inside functions), so an upward
import fails here even when no test happens to execute it.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tvr"

# Bottom to top. Shared helpers (top-level modules) sit below every stage; `synth` is a data source
# like a folder of videos; `train` sits above `eval` because it validates every epoch with the
# papers' metrics; `demo.py` runs the whole pipeline, so it ranks with the CLI.
STAGES = ["io", "synth", "encoders", "features", "data", "models", "postproc", "index", "eval", "train", "serve", "cli"]
SHARED = {"__init__", "atomic", "checksums", "errors", "devices", "registry", "progress", "phrases"}
APPLICATION = {"demo": "cli", "__main__": "cli"}
# What issue 16 names explicitly: the lower stages never reach into training, evaluation, serving or the CLI.
LOWER = {"io", "synth", "encoders", "features", "data", "models", "postproc", "index"}
UPPER = {"train", "eval", "serve", "cli"}


def stage_of(module: str) -> str | None:
    """The stage (or "shared") a dotted module name under tvr belongs to; None outside tvr."""
    parts = module.split(".")
    if parts[0] != "tvr":
        return None
    if len(parts) == 1:
        return "shared"
    head = parts[1]
    if head in SHARED:
        return "shared"
    return APPLICATION.get(head, head)


def rank(stage: str) -> int:
    return -1 if stage == "shared" else STAGES.index(stage)


def imports_of(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, node.module)]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out += [(node.lineno, "<relative>")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return out


def module_files() -> list[tuple[str, Path]]:
    files = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        files.append((stage_of(".".join(["tvr", *rel.with_suffix("").parts])), path))
    return files


def test_every_folder_is_a_known_stage():
    found = {stage for stage, _ in module_files()}
    assert found <= set(STAGES) | {"shared"}, f"place {sorted(found - set(STAGES) - {'shared'})} in STAGES"
    assert set(STAGES) <= found  # a renamed stage must be renamed here too


@pytest.mark.parametrize("stage", STAGES + ["shared"])
def test_no_stage_imports_a_higher_one(stage):
    bad = []
    for own, path in module_files():
        if own != stage:
            continue
        for line, module in imports_of(path):
            assert module != "<relative>", f"{path}:{line}: use absolute imports"
            target = stage_of(module)
            if target is not None and rank(target) > rank(own):
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: {own} imports {module} ({target})")
    assert not bad, "\n".join(bad)


def test_lower_stages_never_import_train_eval_serve_or_cli():
    bad = [
        f"{path.relative_to(SRC.parent)}:{line}: {module}"
        for own, path in module_files() if own in LOWER
        for line, module in imports_of(path) if stage_of(module) in UPPER
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tvr.train.trainer import train\n")
    assert [(2, "tvr.train.trainer")] == imports_of(bad)
    assert rank(stage_of("tvr.train.trainer")) > rank(stage_of("tvr.index.search"))
    assert stage_of("tvr.progress") == "shared" and stage_of("tvr.demo") == "cli" and stage_of("numpy") is None
