"""Case 11: `serve --dry-run` (which validates the whole model config) against the number of
instances: 10, 100, 1,000, 10,000 SGLang instances, each with its own port, GPU and model folder.
The baseline is the floor any reader pays: the same file parsed by Python's tomllib in a fresh
process. Round 3's probe took 58 s at 10,000 (every pair of instances compared for shared GPUs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from bench.report import Case, Row, Target, secs
from bench.timing import Series, interleave, run

TITLE = "Growth: serve --dry-run at 10, 100, 1,000 and 10,000 instances"
SIZES = (10, 100, 1000, 10000)
QUICK_SIZES = (10, 100, 1000)


def config(n: int) -> str:
    """``n`` SGLang instances on 8 GPUs sharing them (mem_fraction_static), ports 20000+."""
    share = round(0.9 / -(-n // 8), 6)
    out = [f'[master]\nengine = "sglang"\npython_path = "{sys.executable}"\n',
           "[instance.control]\nready_timeout = 600\n",
           f'[instance.server]\nhost = "127.0.0.1"\nmem_fraction_static = {share}\n']
    out += [f'[instance.m{i}.control]\ngpu_ids = "{i % 8}"\n[instance.m{i}.server]\n'
            f'model_path = "/models/m{i}"\nport = {20000 + i}\n' for i in range(n)]
    return "\n".join(out)


def case_dryrun(work: Path, cli: list[str], a: argparse.Namespace, progress: Callable[[str], None]) -> Case:
    sizes = QUICK_SIZES if a.quick else SIZES
    c = Case("11", TITLE, "`auto-infer serve --dry-run --json` (read, merge, check every key and every "
             "pair rule: ports, GPU shares, log files; build each argv and environment; print the plan; "
             "listing as problems the model folders this machine lacks), against tomllib parsing the "
             "same file in a fresh Python. Output and time must grow linearly with the instances.")
    per: dict[int, tuple[Series, Series, int]] = {}
    for n in sizes:
        per[n] = _measure(work / "dryrun", n, cli, a, progress)
        c.rows += [Row(f"serve --dry-run, {n:,} instances", per[n][0], f"tomllib, {n:,} instances"),
                   Row(f"tomllib, {n:,} instances", per[n][1])]
    ns = sorted(per)
    step = {n: (per[n][0].median - per[m][0].median) / (n - m) for m, n in zip(ns, ns[1:], strict=False)}
    c.tables.append((["instances", "dry-run median", "each instance added (from the size before)", "JSON plan",
                      "bytes per instance"],
                     [[f"{n:,}", secs(d.median), f"{step[n] * 1000:.2f} ms" if n in step else "—",
                       f"{b / 1e6:.1f} MB", f"{b // n:,}"] for n, (d, _f, b) in per.items()]))
    big, small = ns[-1], ns[-2]
    growth = step[big] / step[small] if step.get(small, 0) > 0 else None
    c.targets = [Target(f"linear: each instance added up to {big:,} costs at most 2× what one cost up to {small:,}",
                        "—" if growth is None else f"{growth:.2f}×", None if growth is None else growth <= 2.0),
                 Target(f"{big:,} instances in under 30 s", secs(per[big][0].median), per[big][0].median < 30)]
    return c


def _measure(folder: Path, n: int, cli: list[str], a: argparse.Namespace,
             progress: Callable[[str], None]) -> tuple[Series, Series, int]:
    """(dry-run series, tomllib series, bytes of the JSON plan) at ``n`` instances."""
    from bench.workload import clean_env
    path = folder / f"models-{n}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config(n))
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(folder / f"ws-{n}"), "AUTO_INFER_SGLANG_CONFIG": str(path)})
    size = [0]

    def ours() -> float:
        t, proc = run([*cli, "serve", "--dry-run", "--json"], env, ok=(0, 1))
        size[0] = len(proc.stdout)
        return t

    def floor() -> float:
        return run([sys.executable, "-c", f"import tomllib; tomllib.load(open({str(path)!r}, 'rb'))"], env)[0]

    s = interleave({f"dry-run {n}": ours, f"tomllib {n}": floor}, warmup=a.warmup, repeats=a.repeats,
                   progress=progress)
    return s[f"dry-run {n}"], s[f"tomllib {n}"], size[0]
