"""What every results file carries (machine, date, command) and small writers for JSON/markdown."""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import sys
from pathlib import Path

import torch

from upstep.atomic import atomic_write


def machine() -> dict:
    from upstep.hardware import describe

    info = {"platform": platform.platform(), "python": platform.python_version(), **describe()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def provenance(command: list[str] | None = None) -> dict:
    cmd = command if command is not None else sys.argv

    def shown(i: int, a: str) -> str:  # the console script or `python -m upstep.cli`: both are `upstep`
        if i == 0 and (a.endswith("upstep") or a.endswith("upstep/cli.py")):
            return "upstep"
        return shlex.quote(a)            # so that the recorded command can be pasted into a shell
    return {"command": " ".join(shown(i, a) for i, a in enumerate(cmd)),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine()}


def write_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def md_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "n/a" if v != v else f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def provenance_md(prov: dict) -> str:
    m = prov["machine"]
    where = m.get("gpu") or m.get("cpu") or m["platform"]
    extra = "".join([f" ({m['torch_threads']} torch threads)" if "torch_threads" in m else "",
                     f", flags {' '.join(m['speed_flags'])}" if m.get("speed_flags") else "",
                     f", torch {m['torch']}", f", oneDNN {m['onednn']}" if m.get("onednn") else "",
                     f", load average {m['load_avg_1min']:.2f} at start" if "load_avg_1min" in m else "",
                     f", transparent huge pages: {m['huge_pages']}" if "huge_pages" in m else ""])
    return f"Command: `{prov['command']}`  \nDate: {prov['date']}  \nMachine: {where}, {m['cpu_count']} CPU cores{extra}"


def regeneration_stamp(command: list[str]) -> dict:
    """{"command", "date"} of a report rewritten from its records, for ``regenerated_md``."""
    prov = provenance(command)
    return {"command": prov["command"], "date": prov["date"]}


def regenerated_md(report: dict) -> list[str]:
    """The line naming a report's regeneration from its records (none for a fresh run): the
    provenance above it stays that of the measurement."""
    r = report.get("report_regenerated")
    return [f"Report regenerated from these records (no training or evaluation) by `{r['command']}`, {r['date']}.",
            ""] if r else []
