"""Results out: `results.json` (everything, every fit) and `RESULTS.md` (tables, command,
machine)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

# RESULTS.md from this heading on holds the other scripts' measurements, kept by hand: a new
# run rewrites the tables above it and keeps it.
KEPT = "## Measured by the other scripts"


@dataclass
class Table:
    """A titled table: `rows` are lists aligned with `columns`; `notes` print under it."""

    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0 or abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> str:
    lines = [f"### {table.title}", "",
             "| " + " | ".join(table.columns) + " |",
             "|" + "|".join(" --- " for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write(out: Path, command: str, machine: dict, settings: dict,
          sections: dict[str, dict], elapsed: float) -> tuple[Path, Path]:
    """Write both files into `out`; `sections` maps a name to {"tables": [...], "records"}."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "machine": machine, "settings": settings,
               "elapsed_seconds": elapsed,
               "sections": {name: {"tables": [asdict(t) for t in s["tables"]],
                                   "records": s["records"]} for name, s in sections.items()}}
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_jsonable(payload), indent=1, default=str) + "\n")

    lines = ["# hjax benchmark", "", "Command (from the repository root):", "",
             f"```\n{command}\n```", "",
             f"Total wall time {elapsed / 60:.1f} min. Every fit's record (times, divergences, "
             "errors, quality) is in `results.json`.", "", "## Machine", "",
             "| | |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in machine.items()]
    lines += ["", "## Settings", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in settings.items()]
    for name, section in sections.items():
        lines += ["", f"## {name}", ""]
        lines += [markdown_table(t) for t in section["tables"]]
    md_path = out / "RESULTS.md"
    kept = md_path.read_text().partition(KEPT)[1:] if md_path.exists() else ()
    md_path.write_text("\n".join(lines) + "\n" + "".join(kept))
    return json_path, md_path
