"""Interrupted runs: `install` killed (SIGKILL, SIGTERM) at points spread over its run, `warm`
killed part-way. After each: the next run completes, the environment is healthy and complete,
doit's state opens, and nothing half-done was ever trusted; the cache manifest is only ever the
old one or the new one."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from auto_infer.core.fsutil import sha256_file
from auto_infer.core.net import free_port
from auto_infer.demo import channel, mirror
from tests.helpers import run_cli, small_channel_specs
from tests.reliability_tools import (
    WarmedCache,
    complete,
    count,
    doit_db_problem,
    finish,
    health,
    kill_group,
    no_traceback,
    prefix_of,
    record,
    spawn_cli,
    warmed_cache,
    workspace_env,
)

EXTRA_FILES = 6000          # one package with this many files: the linking takes a measurable while


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory) -> WarmedCache:
    return warmed_cache(tmp_path_factory.getbasetemp(), EXTRA_FILES)


def _phase(env: dict[str, str], exited: bool) -> str:
    prefix = prefix_of(env)
    marker = Path(env["AUTO_INFER_SGLANG_PROJECT_DIR"]) / ".pixi" / "auto-infer" / "installing-default.json"
    rec = prefix / "conda-meta" / "auto-infer-install"
    if exited:
        return "finished before the kill"
    if rec.exists():
        return "record written"
    if not marker.exists():
        return "before the install step"
    try:
        n = len(os.listdir(prefix / "share" / "hello"))
    except OSError:
        n = 0
    return "linking conda packages" if n <= EXTRA_FILES else "after the conda linking"


def _wait_for(proc, until: float, files: int, hello: Path) -> None:  # type: ignore[no-untyped-def]
    while proc.poll() is None and time.monotonic() < until:
        if files:
            try:
                if len(os.listdir(hello)) >= files:
                    return
            except OSError:
                pass
        time.sleep(0.01)


def _kill_and_recover(w: WarmedCache, root: Path, sig: signal.Signals, kind: str, frac: float) -> dict[str, object]:
    env = workspace_env(root, w.template, w.cache_root)
    hello = prefix_of(env) / "share" / "hello"
    proc = spawn_cli(["install"], env)
    t0 = time.monotonic()
    if kind == "time":
        _wait_for(proc, t0 + frac * w.install_seconds, 0, hello)
    else:
        _wait_for(proc, t0 + 60, max(1, int(frac * EXTRA_FILES)), hello)
    phase = _phase(env, proc.poll() is not None)
    kill_group(proc, sig)
    code, _out, err = finish(proc)
    problems = []
    if not no_traceback(err):
        problems.append(f"killed run printed a traceback: {err[-400:]}")
    # 130: the CLI's own "interrupted" exit; -SIGTERM: the signal came before Python ran our code.
    if code not in (0, -signal.SIGKILL, -signal.SIGTERM, 130):
        problems.append(f"killed run exited {code}: {err[-300:]}")
    if health(env) is None and complete(env, EXTRA_FILES) is not None:
        problems.append(f"trusted a half install: {complete(env, EXTRA_FILES)}")
    r = run_cli(["check"], env)          # the rerun: `check` runs `install` first, then the import check
    if r.returncode != 0 or "demo_extras 0.3" not in r.stdout:
        problems.append(f"rerun (install + check) exited {r.returncode}: {r.stderr[-400:]}")
    for reason in (health(env), complete(env, EXTRA_FILES), doit_db_problem(root / ".auto-infer" / "doit.sqlite")):
        if reason:
            problems.append(reason)
    return {"phase": phase, "code": code, "problems": problems}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_install_killed_at_many_points_recovers(warmed: WarmedCache, tmp_path: Path, sig: signal.Signals) -> None:
    points = [("time", (i + 0.5) / n) for n in [count(1)] for i in range(n)]
    points += [("files", (i + 0.5) / n) for n in [count(2)] for i in range(n)]
    results = [_kill_and_recover(warmed, tmp_path / f"k{i}", sig, kind, frac)
               for i, (kind, frac) in enumerate(points)]
    phases: dict[str, int] = {}
    codes: dict[str, int] = {}
    for r in results:
        phases[str(r["phase"])] = phases.get(str(r["phase"]), 0) + 1
        codes[str(r["code"])] = codes.get(str(r["code"]), 0) + 1
    bad = [r for r in results if r["problems"]]
    record(f"install-killed-{sig.name}", test="test_reliability_interrupts.py",
           what=f"`install` killed with {sig.name} at points spread over its run (a third by time, the rest by "
                f"files linked, {EXTRA_FILES + 1}-file package), then `check` (install + import check): "
                "exit 0, healthy, complete, doit state opens; a half install was never trusted",
           tried=len(results), ok=len(results) - len(bad), phases=phases, exit_codes=codes,
           clean_install_seconds=round(warmed.install_seconds, 2))
    assert not bad, bad


# ---- warm killed part-way: the manifest is only ever the old or the new one -------------------

class ManifestWatcher:
    """Reads the manifest as often as it can; every read must be absent-before-first-write, or
    valid JSON naming one of the allowed lock hashes."""

    def __init__(self, path: Path, allowed: set[str]):
        self.path, self.allowed = path, allowed
        self.reads = 0
        self.bad: list[str] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                self.bad.append("the manifest vanished")
                continue
            finally:
                time.sleep(0.001)       # thousands of reads a second, without starving the run
            self.reads += 1
            try:
                sha = json.loads(raw)["lock_sha256"]
            except (ValueError, KeyError, TypeError):
                self.bad.append(f"not a manifest: {raw[:80]!r}")
                continue
            self.seen.add(sha)
            if sha not in self.allowed:
                self.bad.append(f"unknown lock hash {sha[:12]}")

    def __enter__(self) -> ManifestWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def two_locks(tmp_path_factory: pytest.TempPathFactory, built_channel) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Lock A (the small test channel) warmed once: its manifest; lock B a bigger channel."""
    root = tmp_path_factory.mktemp("warmkill")
    port = free_port()
    conda, wheels = small_channel_specs(extra_files=3000)
    big = channel.build(root / "b", f"http://127.0.0.1:{port}", conda, wheels)
    env_a = workspace_env(root / "a", built_channel.template)
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], env_a)
        assert r.returncode == 0, r.stderr
    manifest_a = Path(env_a["AUTO_INFER_SGLANG_CACHE_ROOT"]) / "cache-manifest.json"
    env_b = workspace_env(root / "measure", big.project)
    with mirror.Mirror(big.root, port):
        t0 = time.monotonic()
        r = run_cli(["warm"], env_b)
        duration = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
    return {"manifest_a": manifest_a.read_bytes(), "sha_a": json.loads(manifest_a.read_text())["lock_sha256"],
            "sha_b": sha256_file(big.project / "pixi.lock"), "big": big, "port": port, "duration": duration}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_warm_killed_part_way_next_warm_completes(two_locks, tmp_path: Path, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    big, sha_a, sha_b = two_locks["big"], two_locks["sha_a"], two_locks["sha_b"]
    n = count(1)
    results = []
    reads = 0
    for i in range(n):
        env = workspace_env(tmp_path / f"w{i}", big.project)
        manifest = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"]) / "cache-manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_bytes(two_locks["manifest_a"])           # the old manifest: lock A was warmed
        problems = []
        with mirror.Mirror(big.root, two_locks["port"]), ManifestWatcher(manifest, {sha_a, sha_b}) as watch:
            proc = spawn_cli(["warm"], env)
            deadline = time.monotonic() + (i + 0.5) / n * two_locks["duration"]
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            exited = proc.poll() is not None
            kill_group(proc, sig)
            code, _out, err = finish(proc)
            if not no_traceback(err):
                problems.append(f"killed warm printed a traceback: {err[-300:]}")
            r = run_cli(["warm"], env)
            if r.returncode != 0:
                problems.append(f"next warm exited {r.returncode}: {r.stderr[-400:]}")
        reads += watch.reads
        problems += watch.bad[:3]
        final = json.loads(manifest.read_text())
        if final["lock_sha256"] != sha_b:
            problems.append("the manifest after the next warm is not the new one")
        for reason in (health(env), complete(env, 3000)):
            if reason:
                problems.append(reason)
        r = run_cli(["install"], env)
        if r.returncode != 0 or "up to date" not in r.stderr:
            problems.append(f"install after warm: exit {r.returncode}: {r.stderr[-300:]}")
        results.append({"code": code, "exited_first": exited, "problems": problems})
    bad = [r for r in results if r["problems"]]
    record(f"warm-killed-{sig.name}", test="test_reliability_interrupts.py",
           what=f"`warm` (lock A warmed, now lock B) killed with {sig.name} part-way, then `warm` again: "
                "completes, manifest is B, env healthy; the manifest read continuously meanwhile is "
                "always valid JSON naming A or B",
           tried=n, ok=n - len(bad), manifest_reads=reads,
           kill_before_exit=sum(1 for r in results if not r["exited_first"]))
    assert not bad, bad


@pytest.mark.parametrize("damage", ["empty", "cut in half"])
def test_conda_meta_record_left_empty_by_a_cut_short_run_is_repaired(built_channel, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                     damage: str) -> None:
    """Regression: rattler writes conda-meta/*.json in place; a run stopped by a full disk (or a kill)
    left them empty, and every later install failed ("Failed to parse JSON", once a segfault) until
    the environment was deleted by hand. Now a repair removes unreadable records first."""
    env = workspace_env(tmp_path / "ws", built_channel.template)
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        assert run_cli(["warm"], env).returncode == 0
    meta = prefix_of(env) / "conda-meta"
    for rec in meta.glob("*.json"):
        rec.write_bytes(b"" if damage == "empty" else rec.read_bytes()[: rec.stat().st_size // 2])
    assert health(env) is not None
    r = run_cli(["check"], env)
    record(f"conda-meta-{damage.replace(' ', '-')}", test="test_reliability_interrupts.py",
           what=f"every conda-meta record of an installed environment {damage} (as a full disk or a kill "
                "leaves them), then `check`: the repair removes them, relinks, exit 0, healthy",
           tried=1, ok=int(r.returncode == 0 and health(env) is None))
    assert r.returncode == 0, r.stderr
    assert "removed an unreadable conda-meta record" in r.stderr
    assert health(env) is None and complete(env, 0) is None


SITECUSTOMIZE = '''
import builtins, signal
_exec, _signal, armed = builtins.exec, signal.signal, {"on": False, "fired": False}
def _watch(sig, handler):                      # armed once auto-infer installs its SIGTERM handler
    armed["on"] = armed["on"] or (sig == signal.SIGTERM and callable(handler))
    return _signal(sig, handler)
def _exec_with_sigterm(code, *args, **kwargs):  # the next string exec (a dataclass being made) gets it
    if armed["on"] and not armed["fired"] and isinstance(code, str):
        armed["fired"] = True
        code = "import signal as _s; _s.raise_signal(_s.SIGTERM)\\n" + code
    return _exec(code, *args, **kwargs)
signal.signal, builtins.exec = _watch, _exec_with_sigterm
'''


def test_sigterm_during_start_up_exits_130(tmp_path: Path) -> None:
    """Deterministic form of what the kill test sees about 1 time in 40 (exit code -2)."""
    import subprocess
    import sys
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(workspace_env(tmp_path / "ws", tmp_path / "no-template"), PYTHONPATH=str(tmp_path / "inject"))
    r = subprocess.run([sys.executable, "-m", "auto_infer", "install"], env=env, capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert "interrupted after" in r.stderr, r.stderr
    assert r.returncode == 130, r.returncode
