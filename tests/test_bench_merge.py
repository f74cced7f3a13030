"""bench/merge.py: a partial bench run updates its own cases in the report, and says so (no timing)."""

from __future__ import annotations


def _report(commit: str, when: str, rounds: int, cases: dict[str, str]) -> str:
    head = ["# Benchmarks", "", f"- Python 3.11.7; auto-infer 0.1.0 (commit {commit}); doit 0.37.0",
            f"- run: {when}; mode: full; scale: 1.5; rounds: 1 warm-up + {rounds} measured per case", "",
            "### Targets at a glance", "", "| case | target | measured | met |", "|---|---|---|---|",
            *[f"| {k} | t{k} | {v} | ✅ |" for k, v in cases.items()], ""]
    body = [line for k, v in cases.items() for line in (f"## {k}. Case {k}", "", v, "")]
    return "\n".join(head + body) + "\n"


def test_a_partial_run_replaces_its_cases_and_says_where_they_came_from() -> None:
    from bench.merge import merge

    full = _report("aaa111", "2026-12-04 02:56 UTC", 3, {"1": "one-old", "2": "two-old", "9": "nine-old"})
    first = merge(full, _report("bbb222", "2026-12-04 03:10 UTC", 7, {"9": "nine-new"}), {"9"})
    assert "nine-new" in first and "nine-old" not in first and "one-old" in first
    assert "(commit aaa111)" in first                                   # the full run's header stays
    assert "- partial run, cases 9: 2026-12-04 03:10 UTC, commit bbb222, rounds: 1 warm-up + 7" in first
    second = merge(first, _report("ccc333", "2026-12-04 03:44 UTC", 7, {"1": "one-new", "9": "nine-newer"}),
                   {"1", "9"})
    assert "one-new" in second and "nine-newer" in second and "two-old" in second
    assert "cases 9: 2026-12-04 03:10" not in second                   # superseded: all its cases again
    assert "- partial run, cases 1, 9: 2026-12-04 03:44 UTC, commit ccc333" in second
    assert second.index("- run: ") < second.index("- partial run")
