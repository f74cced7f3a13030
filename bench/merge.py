"""A partial run (`--cases 8`) updates only its own cases in an existing report.

The report's machine header and workloads stay those of the last full run; each case section
(`## N. …`) and its rows of "Targets at a glance" are replaced (or inserted in case order), so
one slow case can be rerun without rerunning, and re-timing, all the others. The header gains a
line per partial run (its cases, time, commit and rounds), so every section says where it came
from; a line whose cases were all measured again since is dropped.
"""

from __future__ import annotations

import re

SECTION = re.compile(r"^## (\w+)\. ")
PARTIAL = re.compile(r"^- partial run, cases ([\w, ]+): ")
TARGET_ROW = re.compile(r"^\| (\w+) \| ")
GLANCE = "### Targets at a glance"


def _split(text: str) -> tuple[list[str], list[tuple[str | None, list[str]]]]:
    """(lines before the first `## `, [(case key or None, the section's lines)])."""
    head: list[str] = []
    sections: list[tuple[str | None, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            m = SECTION.match(line)
            sections.append((m.group(1) if m else None, [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            head.append(line)
    return head, sections


def _order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (10**6, key)


def _glance_rows(head: list[str]) -> list[str]:
    if GLANCE not in head:
        return []
    i = head.index(GLANCE) + 4                    # title, blank, header, separator
    rows = []
    while i < len(head) and TARGET_ROW.match(head[i]):
        rows.append(head[i])
        i += 1
    return rows


def _merge_glance(head: list[str], new_rows: list[str], keys: set[str]) -> list[str]:
    old_rows = _glance_rows(head)
    kept = [r for r in old_rows if TARGET_ROW.match(r).group(1) not in keys]  # type: ignore[union-attr]
    rows = sorted(kept + new_rows, key=lambda r: _order(TARGET_ROW.match(r).group(1)))  # type: ignore[union-attr]
    if GLANCE in head:
        i = head.index(GLANCE) + 4
        return head[:i] + rows + head[i + len(old_rows):]
    table = [GLANCE, "", "| case | target | measured | met |", "|---|---|---|---|", *rows, ""]
    return head + table if rows else head


def merge(old: str, new: str, keys: set[str]) -> str:
    """``old`` with the sections and target rows of ``keys`` taken from ``new``."""
    old_head, old_sections = _split(old)
    new_head, new_sections = _split(new)
    fresh = {k: lines if lines[-1] == "" else [*lines, ""] for k, lines in new_sections if k in keys}
    out = [(k, fresh.pop(k) if k in fresh else lines) for k, lines in old_sections]
    for key, lines in sorted(fresh.items(), key=lambda kv: _order(kv[0])):
        at = next((i for i, (k, _) in enumerate(out) if k is None or _order(k) > _order(key)), len(out))
        out.insert(at, (key, lines))
    head = _provenance(_merge_glance(old_head, _glance_rows(new_head), keys), new_head, keys)
    text = "\n".join(head + [line for _, lines in out for line in lines])
    return text.rstrip() + "\n"


def _provenance(head: list[str], new_head: list[str], keys: set[str]) -> list[str]:
    """``head`` with a line saying which run the cases ``keys`` now come from."""
    commit = next((m.group(1) for line in new_head if (m := re.search(r"\(commit (\w+)\)", line))), "?")
    run = next((line[len("- run: "):] for line in new_head if line.startswith("- run: ")), "")
    when = run.split(";")[0]
    rounds = next((part.strip() for part in run.split(";") if part.strip().startswith("rounds:")), "")
    kept = []
    for line in head:
        m = PARTIAL.match(line)
        if m and {k.strip() for k in m.group(1).split(",")} <= keys:
            continue                                        # all its cases were measured again
        kept.append(line)
    at = max((i for i, line in enumerate(kept) if line.startswith("- run: ") or PARTIAL.match(line)),
             default=None)
    if at is None:
        return kept
    cases = ", ".join(sorted(keys, key=_order))
    return kept[:at + 1] + [f"- partial run, cases {cases}: {when}, commit {commit}, {rounds}"] + kept[at + 1:]
