"""The bench's table: rows of (section, measurement, result, target), printed aligned or as Markdown."""

from __future__ import annotations

from dataclasses import dataclass

HEADERS = ("#", "measurement", "result", "target")


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    section: str
    measurement: str
    result: str
    target: str = ""


def render_text(rows: list[Row]) -> str:
    """The rows as a plain aligned table (what ``make bench`` prints)."""
    cells = [HEADERS, *((r.section, r.measurement, r.result, r.target) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table (for ``docs/performance.md``)."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += [f"| {esc(r.section)} | {esc(r.measurement)} | {esc(r.result)} | {esc(r.target)} |" for r in rows]
    return "\n".join(lines)


def ratio_verdict(ratio: float, target: float) -> str:
    """``"met"`` or ``"NOT met"`` for a ratio against its target."""
    return "met" if ratio >= target else "NOT met"
