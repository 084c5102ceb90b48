"""The README's results table is a short form of the results page's: every number in it is a row there."""

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


def numbers(row: str) -> str:
    """A table row without its first cell (the description)."""
    return row.split(" | ", 1)[1]


def test_every_readme_result_is_a_row_of_the_results_page():
    readme, page = results_table(ROOT / "README.md"), results_table(ROOT / "docs" / "results.md")
    assert readme[:2] == page[:2]  # the same columns
    assert len(page) > 10 and len(readme) > 10
    page_numbers = {numbers(row) for row in page[2:]}
    for row in readme[2:]:
        assert numbers(row) in page_numbers, f"README row not on docs/results.md: {row!r}"


def test_the_table_reader_stops_at_the_first_line_outside_the_table(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text(f"intro\n\n{HEADER} x |\n|---|\n| a | 1 |\n\n| b | 2 |\n", encoding="utf-8")
    assert results_table(doc) == [f"{HEADER} x |", "|---|", "| a | 1 |"]


def test_a_row_description_is_not_part_of_its_numbers():
    assert numbers("| mmt, the same | 58.0 | 89.4 |") == "58.0 | 89.4 |"
