"""The README's results table is the results page's, row for row (one is edited, the other follows)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| model | t2v R@1 | R@5 | base |"


def results_table(path: Path) -> list[str]:
    """The lines of the first Markdown table in `path` whose header starts with `HEADER`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_readme_results_table_equals_the_results_page():
    readme, page = results_table(ROOT / "README.md"), results_table(ROOT / "docs" / "results.md")
    assert len(page) > 10
    for i, (a, b) in enumerate(zip(readme, page)):
        assert a == b, f"row {i}: README {a!r} != docs/results.md {b!r}"
    assert len(readme) == len(page)


def test_the_table_reader_stops_at_the_first_line_outside_the_table(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(f"intro\n\n{HEADER} x |\n|---|\n| a | 1 |\n\n| b | 2 |\n", encoding="utf-8")
    assert results_table(doc) == [f"{HEADER} x |", "|---|", "| a | 1 |"]
