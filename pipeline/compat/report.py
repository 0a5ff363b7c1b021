"""The compatibility matrix as people read it: one Markdown table of models by runtime (the worst
cell of each), the rejected graphs' verdicts, the terminal summary, and the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from pipeline.compat import rejected

VARIANTS = ("float", "dequant", "uint8")


def cell_text(cell: dict) -> str:
    if not cell["loads"]:
        return f"does not load: {cell['error'][:80]}"
    mark = "ok" if cell["ok"] else "WRONG"
    return f"{mark}, R² {cell['test_r2']:.4f}, {cell['max_abs_diff']:.1e}"


def short_setting(setting: str) -> str:
    """ORT_ENABLE_BASIC -> BASIC, graphOptimizationLevel=all -> all: the table's own words."""
    for prefix in ("ORT_ENABLE_", "ORT_", "graphOptimizationLevel="):
        setting = setting.removeprefix(prefix)
    return setting


def worst_cell(cells: list[dict]) -> dict:
    failing = [c for c in cells if not c["ok"]]
    return failing[0] if failing else max(cells, key=lambda c: c["max_abs_diff"])


def markdown(rows: list[dict]) -> str:
    """One row per runtime: every setting it ran, and each model's worst cell over them; then,
    if it ran, where the graph not shipped goes wrong."""
    lines = [
        "| runtime | version | settings run | " + " | ".join(VARIANTS) + " |",
        "|---|---|---|" + "---|" * len(VARIANTS),
    ]
    for row in rows:
        settings = ", ".join(short_setting(s) for s in dict.fromkeys(c["setting"] for c in row["cells"]))
        worst = [cell_text(worst_cell([c for c in row["cells"] if c["model"] == v])) for v in VARIANTS]
        lines.append(f"| {row['engine']} | {row['version'].split('-')[0]} | {settings} | " + " | ".join(worst) + " |")
    names = [r.name for r in rejected.REJECTED if any(c["model"] == r.name for row in rows for c in row["cells"])]
    if names:
        lines += ["", rejected_table(rows, names)]
    return "\n".join(lines) + "\n"


def rejected_verdict(cells: list[dict]) -> str:
    """ok, does not load, or the settings that get it wrong: one rejected graph on one runtime."""
    if all(c["ok"] for c in cells):
        return "ok"
    if not any(c["loads"] for c in cells):
        return "does not load"
    wrong = [c for c in cells if not c["ok"]]
    worst = max((c for c in wrong if c["loads"]), key=lambda c: c["max_abs_diff"])
    return f"wrong at {', '.join(short_setting(c['setting']) for c in wrong)} ({worst['max_abs_diff']:.2g})"


def rejected_table(rows: list[dict], names: list[str]) -> str:
    """The graphs not shipped: one row per runtime, one column per graph."""
    lines = ["| runtime | version | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        verdicts = [rejected_verdict([c for c in row["cells"] if c["model"] == n]) for n in names]
        lines.append(f"| {row['engine']} | {row['version'].split('-')[0]} | " + " | ".join(verdicts) + " |")
    changes = {r.name: r.change for r in rejected.REJECTED}
    return "\n".join(lines + [""] + [f"- {n}: {changes[n]}." for n in names])


def terminal_table(rows: list[dict]) -> str:
    """Every cell: one line per runtime and setting."""
    width = max(len(short_setting(c["setting"])) for row in rows for c in row["cells"])
    header = f"{'runtime':<17} {'version':<10} {'setting':<{width}} " + " ".join(f"{v:<30}" for v in VARIANTS)
    lines = [header, "-" * len(header)]
    for row in rows:
        settings = list(dict.fromkeys(c["setting"] for c in row["cells"]))
        for setting in settings:
            by_model = {c["model"]: c for c in row["cells"] if c["setting"] == setting}
            lines.append(
                f"{row['engine']:<17} {row['version'].split('-')[0]:<10} {short_setting(setting):<{width}} "
                + " ".join(f"{cell_text(by_model[v]) if v in by_model else '-':<30}" for v in VARIANTS)
            )
    return "\n".join(lines)


def machine() -> dict:
    """The CPU the matrix ran on: OpenVINO's default precision depends on its bf16 support."""
    cpu, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "bf16": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
    }
