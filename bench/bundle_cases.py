"""Case 9: bundle export / import against plain `tar` of the same files; bundle, cache and delta sizes.

Export: `auto-infer bundle export` (verify every archive and wheel, hash while writing, index
first) against `tar -cf` of the same archive + wheel files. Import: `auto-infer bundle import` into
an empty cache (verify every member, lay out archives and wheels, extract the conda packages into
pkgs/, manifest) against `tar -xf` of the same bundle. Sizes: the bundle against the cache warm
builds for the same lock (extracted packages + wheels), and a delta after a one-package change.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from auto_infer.demo import mirror
from bench import install_cases as ic
from bench.report import Case, Row, Target
from bench.timing import Failed, Scratch, interleave, run

OURS_EXPORT, TAR_C = "auto-infer bundle export", "tar -cf (the same files)"
OURS_IMPORT, TAR_X = "auto-infer bundle import", "tar -xf (the same bundle)"
FLOOR = "extraction floor (untar + extract every archive, all cores)"
FLOOR_SCRIPT = Path(__file__).with_name("floor.py")


def tree_bytes(*roots: Path) -> int:
    """Bytes of the files under ``roots``, each inode once (hard links are not counted twice)."""
    seen, total = set(), 0
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for f in files:
                st = os.lstat(os.path.join(folder, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def _drop_one_package(lock: Path, out: Path) -> str:
    """The lock before a one-package bump: the largest conda package (not python) left out."""
    text = lock.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("      - conda:") and "/python-" not in ln]
    victim = next((ln for ln in lines if "/libcublas-" in ln), lines[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "pixi.lock").write_text("\n".join(ln for ln in text.splitlines() if ln != victim) + "\n")
    shutil.copy(lock.with_name("pixi.toml"), out / "pixi.toml")
    return victim.rsplit("/", 1)[-1]


def case_bundle(w: ic.Warmed, cli: list[str], warmup: int, repeats: int, work: Path,
                progress: Callable[[str], None]) -> Case:
    c = Case("9", f"Bundle export / import ({w.wl.shape.label})", __doc__.split("\n\n")[1].replace("\n", " "))
    work.mkdir(parents=True, exist_ok=True)
    bundle = work / "full.tar"
    with mirror.Mirror(w.wl.root, w.wl.port):          # the first export fills the archive store (untimed)
        run([*cli, "bundle", "export", str(bundle)], w.env)
    archives = w.cache_root / "conda" / "archives"
    wheels = w.cache_root / "pypi" / "wheels"
    scratch = Scratch(work / "runs")

    def export() -> float:
        return run([*cli, "bundle", "export", str(scratch.new("ours.tar"))], w.env)[0]

    def tar_c() -> float:
        return run(["tar", "-cf", str(scratch.new("plain.tar")), "-C", str(w.cache_root),
                    "--exclude=.verified.json", "conda/archives", "pypi/wheels"], w.env)[0]

    def import_() -> float:
        ws = scratch.new("import-ws")
        env = dict(w.env, AUTO_INFER_WORKSPACE_DIR=str(ws), AUTO_INFER_SGLANG_CACHE_ROOT=str(ws / "cache"),
                   AUTO_INFER_SGLANG_TEMPLATE_DIR=str(ws / "template"),
                   AUTO_INFER_SGLANG_PROJECT_DIR=str(ws / "project"))
        return run([*cli, "bundle", "import", str(bundle)], env)[0]

    def floor() -> float:
        return run([sys.executable, str(FLOOR_SCRIPT), str(bundle), str(scratch.new("floor"))], w.env)[0]

    def tar_x() -> float:
        dest = scratch.new("untar")
        dest.mkdir()
        return run(["tar", "-xf", str(bundle), "-C", str(dest)], w.env)[0]

    series = interleave({OURS_EXPORT: export, TAR_C: tar_c, OURS_IMPORT: import_, FLOOR: floor, TAR_X: tar_x},
                        warmup=warmup, repeats=repeats, progress=progress)
    c.rows = [Row(OURS_EXPORT, series[OURS_EXPORT], TAR_C), Row(TAR_C, series[TAR_C]),
              Row(OURS_IMPORT, series[OURS_IMPORT], FLOOR), Row(FLOOR, series[FLOOR]), Row(TAR_X, series[TAR_X])]
    ratio = c.ratio(OURS_IMPORT)
    c.targets = [Target("bundle import within 1.5× of the all-core extraction floor (issue 22)",
                        "n/a" if ratio is None else f"{ratio:.2f}×", None if ratio is None else ratio <= 1.5)]
    same = scratch.latest["ours.tar"].read_bytes() == bundle.read_bytes()
    scratch.clear()
    if not same:
        raise Failed("two exports of the same lock and cache gave different bytes")
    _sizes(c, w, cli, work, bundle, archives, wheels)
    return c


def _sizes(c: Case, w: ic.Warmed, cli: list[str], work: Path, bundle: Path, archives: Path, wheels: Path) -> None:
    size = bundle.stat().st_size
    cache = tree_bytes(w.cache_root / "pixi" / "pkgs", wheels)
    mb = size / 1e6
    c.notes.append(f"throughput: export {mb / c.rows[0].series.median:.0f} MB/s, import "  # type: ignore[union-attr]
                   f"{mb / c.rows[2].series.median:.0f} MB/s (bundle {mb:.1f} MB).")  # type: ignore[union-attr]
    base_tpl = work / "base-template"
    dropped = _drop_one_package(w.project / "pixi.lock", base_tpl)
    base_bundle = work / "base.tar"
    run([*cli, "bundle", "export", str(base_bundle)], dict(w.env, AUTO_INFER_SGLANG_TEMPLATE_DIR=str(base_tpl)))
    with tarfile.open(base_bundle) as tf:
        manifest = tf.extractfile("cache-manifest.json").read()  # type: ignore[union-attr]
    (work / "base-manifest.json").write_bytes(manifest)
    delta = work / "delta.tar"
    run([*cli, "bundle", "export", str(delta), "--since", str(work / "base-manifest.json")], w.env)
    with tarfile.open(delta) as tf:
        carried = [n for n in tf.getnames() if n.startswith(("conda/", "pypi/"))]
    n_art = len(json.loads(manifest)["artifacts"]) + 1
    c.tables.append((["what", "bytes", "vs"], [
        ["bundle (original archives + wheels, uncompressed tar)", f"{mb:.1f} MB", "1"],
        ["the same lock's cache as warm leaves it (extracted pkgs/ + wheels)", f"{cache / 1e6:.1f} MB",
         f"bundle = {size / cache:.2f}× of it"],
        ["archives + wheels alone (sum of file sizes)", f"{tree_bytes(archives, wheels) / 1e6:.1f} MB", ""],
        [f"delta after a one-package bump ({dropped} added; carries {len(carried)} of {n_art} artifacts)",
         f"{delta.stat().st_size / 1e6:.2f} MB", f"{delta.stat().st_size / size:.3f}× of the full bundle"],
    ]))


def import_growth(c: Case, warmed: list[ic.Warmed], cli: list[str], warmup: int, repeats: int, work: Path,
                  progress: Callable[[str], None]) -> None:
    """``bundle import`` against the all-core extraction floor at each size (×1, ×3, ×10), interleaved
    per size like the main table; a table row per size, and the target judged at every size."""
    rows, worst = [], 0.0
    for w in warmed:
        label = w.wl.shape.label
        sub = work / f"growth-{label.strip('×')}"
        sub.mkdir(parents=True, exist_ok=True)
        bundle = sub / "full.tar"
        scratch = Scratch(sub / "runs")
        with mirror.Mirror(w.wl.root, w.wl.port):
            run([*cli, "bundle", "export", str(bundle)], w.env)

        def import_(w: ic.Warmed = w, bundle: Path = bundle, scratch: Scratch = scratch) -> float:
            ws = scratch.new("import-ws")
            env = dict(w.env, AUTO_INFER_WORKSPACE_DIR=str(ws), AUTO_INFER_SGLANG_CACHE_ROOT=str(ws / "cache"),
                       AUTO_INFER_SGLANG_TEMPLATE_DIR=str(ws / "template"),
                       AUTO_INFER_SGLANG_PROJECT_DIR=str(ws / "project"))
            return run([*cli, "bundle", "import", str(bundle)], env)[0]

        def floor(w: ic.Warmed = w, bundle: Path = bundle, scratch: Scratch = scratch) -> float:
            return run([sys.executable, str(FLOOR_SCRIPT), str(bundle), str(scratch.new("floor"))], w.env)[0]

        series = interleave({OURS_IMPORT: import_, FLOOR: floor}, warmup=warmup, repeats=repeats,
                            progress=progress)
        scratch.clear()
        ours, base = series[OURS_IMPORT].median, series[FLOOR].median
        worst = max(worst, ours / base)
        rows.append([label, str(w.wl.shape.packages + 1), f"{bundle.stat().st_size / 1e6:.1f} MB",
                     f"{ours * 1000:.0f} ms", f"{base * 1000:.0f} ms", f"{ours / base:.2f}×"])
    c.tables.append((["size", "conda pkgs", "bundle", "bundle import", "all-core floor", "ratio"], rows))
    c.targets.append(Target("bundle import within 1.5× of the floor at every size (×1, ×3, ×10)",
                            f"worst {worst:.2f}×", worst <= 1.5))
