"""Bench case: `auto-infer k8s --out` on configs of 10, 100, 1,000 and 10,000 instances (issue 21.9).

Each size is a generated config (one SGLang instance per table, all on one port, a gateway in
front); `auto-infer k8s --out DIR` runs as a fresh process into an empty folder. Reported per size:
wall and CPU seconds, bytes written, files, bytes per instance, and the CPU each added instance
costs between two sizes, with its growth against the first step (1.00× = linear; quadratic growth
would multiply it by ~10 per step). The raw floor in the same run: `python -c pass`.

    python -m bench.k8s_growth [--sizes 10,100,1000,10000] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def config_text(n: int) -> str:
    head = ('[master]\nenable = true\n\n[instance.control]\nready_timeout = 600\n\n'
            '[instance.server]\nport = 30000\nhost = "0.0.0.0"\n\n[router]\npolicy = "round_robin"\n\n')
    return head + "".join(f'[instance.m{i:05d}.server]\nmodel_path = "/llm-models/m{i:05d}"\n'
                          f'served_model_name = "m{i:05d}"\ntp_size = 1\n\n' for i in range(n))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU of the child) seconds of one run; a failure stops the bench with its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(n: int, work: Path) -> dict[str, float]:
    cfg, out = work / f"c{n}.toml", work / f"out{n}"
    cfg.write_text(config_text(n))
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "AUTO_INFER_WORKSPACE_DIR": str(work / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(cfg)}
    wall, cpu = timed([sys.executable, "-m", "auto_infer", "k8s", "--out", str(out)], env)
    files = [p for p in out.iterdir() if p.is_file()]
    return {"n": n, "wall": wall, "cpu": cpu, "bytes": sum(p.stat().st_size for p in files), "files": len(files)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.k8s_growth", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,100,1000,10000")
    p.add_argument("--work", default="")
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="k8s-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    floor_wall, floor_cpu = timed([sys.executable, "-c", "pass"], dict(os.environ))
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        rows.append(measure(n, work))
        print(f"measured {n} instances", file=sys.stderr, flush=True)
    print(f"floor (python -c pass): wall {floor_wall:.2f} s, CPU {floor_cpu:.2f} s")
    print("| instances | wall s | CPU s | files | MB | bytes/instance | CPU ms per added instance | growth |")
    print("|---|---|---|---|---|---|---|---|")
    first = None
    for prev, r in zip([None, *rows], rows, strict=False):
        added = (r["cpu"] - prev["cpu"]) / (r["n"] - prev["n"]) if prev else None
        first = first or added
        print(f"| {r['n']:,} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['files']:,} | {r['bytes'] / 1e6:.1f} | "
              f"{r['bytes'] / r['n']:,.0f} | {'—' if added is None else f'{added * 1000:.1f}'} | "
              f"{'—' if added is None or not first else f'{added / first:.2f}×'} |")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
