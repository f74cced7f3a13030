"""Results as data, and docs/benchmarks.md rendered from them (machine header first)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.timing import Series


@dataclass
class Row:
    label: str
    series: Series | None
    baseline: str | None = None    # label of the row in the same case this one is divided by
    note: str = ""


@dataclass
class Target:
    text: str                      # what the issue asks, e.g. "within 1.5× of the raw no-op"
    measured: str                  # what we got, e.g. "1.32×"
    met: bool | None               # None: not measurable in this run


@dataclass
class Case:
    key: str
    title: str
    what: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)

    def ratio(self, label: str) -> float | None:
        r = self.row(label)
        b = self.row(r.baseline) if r and r.baseline else None
        if not (r and b and r.series and b.series and b.series.median > 0):
            return None
        return r.series.median / b.series.median


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("auto-infer", "py-rattler", "uv", "doit"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "?"
    return out


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    repo = str(Path(__file__).parents[1])
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "auto_infer", "tasks", "dodo.py"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit += " + uncommitted changes" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {"cores": str(os.cpu_count()), "cpu": cpu, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "python_executable": sys.executable}


def secs(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _case_md(c: Case) -> list[str]:
    out = [f"## {c.key}. {c.title}", "", c.what, ""]
    if c.skipped:
        return [*out, f"**Skipped:** {c.skipped}", ""]
    if c.rows:
        out += ["| run | median | min | max | n | ratio | vs |", "|---|---:|---:|---:|---:|---:|---|"]
        for r in c.rows:
            if r.series is None or not r.series.samples:
                out.append(f"| {r.label} | — | — | — | 0 | — | {r.note} |")
                continue
            s, ratio = r.series, c.ratio(r.label)
            rt = f"**{ratio:.2f}×**" if ratio is not None else "1 (baseline)" if _is_base(c, r) else ""
            vs = f"{r.baseline}" if r.baseline else ""
            out.append(f"| {r.label} | {secs(s.median)} | {secs(s.min)} | {secs(s.max)} | {len(s.samples)} "
                       f"| {rt} | {vs}{' — ' + r.note if r.note else ''} |")
        out.append("")
    for head, rows in c.tables:
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    if c.targets:
        out += ["| target | measured | met |", "|---|---|---|"]
        for t in c.targets:
            met = "—" if t.met is None else "✅ yes" if t.met else "❌ no"
            out.append(f"| {t.text} | {t.measured} | {met} |")
        out.append("")
    out += [f"- {n}" for n in c.notes]
    return [*out, ""] if c.notes else out


def _is_base(c: Case, r: Row) -> bool:
    return any(x.baseline == r.label for x in c.rows)


def render(cases: list[Case], *, header: dict[str, str], workloads: list[str], method: list[str],
           findings: list[str]) -> str:
    v, m = versions(), machine()
    lines = [
        "# Benchmarks", "",
        "Written by `python -m bench` (bench/); do not edit by hand. Absolute times on a shared, noisy "
        "machine mean little: read the **ratios**, each against a baseline measured in the same run, "
        "interleaved with it.", "",
        f"- machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}",
        f"- Python {v['python']}; auto-infer {v['auto-infer']} (commit {m['commit']}); py-rattler "
        f"{v['py-rattler']}; uv {v['uv']}; doit {v['doit']}",
        f"- run: {m['date']}; " + "; ".join(f"{k}: {val}" for k, val in header.items()), "",
        "### Workloads", "", *[f"- {w}" for w in workloads], "",
        "### Method", "", *[f"- {x}" for x in method], "",
    ]
    summary = [t for c in cases for t in c.targets]
    if summary:
        lines += ["### Targets at a glance", "", "| case | target | measured | met |", "|---|---|---|---|"]
        for c in cases:
            for t in c.targets:
                met = "—" if t.met is None else "✅" if t.met else "❌"
                lines.append(f"| {c.key} | {t.text} | {t.measured} | {met} |")
        lines.append("")
    for c in cases:
        lines += _case_md(c)
    if findings:
        lines += ["## Findings and proposed fixes", "", *findings, ""]
    return "\n".join(lines).rstrip() + "\n"
