"""Several `install` runs at once: every one ends with exit 0 (the late ones say they waited), the
work is done once, the environment is healthy and doit's state intact afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.reliability_tools import (
    WarmedCache,
    complete,
    count,
    doit_db_problem,
    finish,
    health,
    no_traceback,
    record,
    warmed_cache,
    workspace_env,
)

EXTRA_FILES = 6000
DODO = Path(__file__).resolve().parents[1] / "dodo.py"


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory) -> WarmedCache:
    return warmed_cache(tmp_path_factory.getbasetemp(), EXTRA_FILES)


def _spawn(env: dict[str, str], via_doit: bool):  # type: ignore[no-untyped-def]
    import subprocess
    cmd = ([sys.executable, "-m", "doit", "-f", str(DODO), "install"] if via_doit
           else [sys.executable, "-m", "auto_infer", "install"])
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")


def _round(w: WarmedCache, root: Path, n: int, mixed: bool) -> list[str]:
    """``n`` installs of one fresh workspace at once; the problems found (empty: ended well)."""
    env = workspace_env(root, w.template, w.cache_root)
    procs = [_spawn(env, via_doit=mixed and i % 2 == 1) for i in range(n)]
    results = [finish(p, timeout=300) for p in procs]
    problems = []
    errs = [err for _, _, err in results]
    for code, _out, err in results:
        if code != 0 or not no_traceback(err):
            problems.append(f"exit {code}: {err[-400:]}")
    did = sum(e.count("→ install:") for e in errs)
    if did != 1:
        problems.append(f"the install step ran {did} times")
    late = [e for e in errs if "→ install:" not in e]
    for e in late:
        if not ("already running elsewhere: waited" in e or "up to date" in e or "nothing to do" in e):
            problems.append(f"a late run did not say it waited or found the work done: {e[-300:]}")
    for reason in (health(env), complete(env, w.extra_files), doit_db_problem(root / ".auto-infer" / "doit.sqlite")):
        if reason:
            problems.append(reason)
    again = run_cli(["check"], env)
    if again.returncode != 0 or "-- install (up to date" not in again.stderr:
        problems.append(f"a following run: exit {again.returncode}: {again.stderr[-300:]}")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 4])
def test_installs_at_once_end_well_and_work_is_done_once(warmed: WarmedCache, tmp_path: Path, n: int) -> None:
    rounds = count(1)       # 2 at once: CLI runs only, then alternating; 4 at once: mixed, then alternating
    found = [_round(warmed, tmp_path / f"r{i}", n, mixed=(i + n // 4) % 2 == 1) for i in range(rounds)]
    bad = [p for p in found if p]
    record(f"installs-at-once-{n}", test="test_reliability_concurrency.py",
           what=f"{n} `install` runs started together on one fresh workspace (in mixed rounds half of them "
                "go through `doit -f dodo.py`, which has no run lock, only the install lock): all exit 0, the "
                "install step ran once, the others waited or found it done, env healthy and complete, "
                "doit's sqlite opens and passes integrity_check, the next run says up to date",
           tried=rounds, ok=rounds - len(bad), runs=rounds * n)
    assert not bad, bad


def test_installs_of_two_workspaces_sharing_one_cache(warmed: WarmedCache, tmp_path: Path) -> None:
    """Different workspaces take different locks: both install at once from one cache root."""
    rounds = count(1)
    bad = []
    for i in range(rounds):
        envs = [workspace_env(tmp_path / f"r{i}-{k}", warmed.template, warmed.cache_root) for k in range(2)]
        procs = [_spawn(e, via_doit=False) for e in envs]
        results = [finish(p, timeout=300) for p in procs]
        problems = [f"exit {c}: {e[-300:]}" for c, _, e in results if c != 0]
        problems += [r for e in envs for r in (health(e), complete(e, warmed.extra_files)) if r]
        if problems:
            bad.append(problems)
    record("installs-sharing-a-cache", test="test_reliability_concurrency.py",
           what="2 workspaces with one shared cache root install at the same moment: both exit 0, both "
                "healthy and complete", tried=rounds, ok=rounds - len(bad))
    assert not bad, bad


def _copy_in_children(env: dict[str, str], n: int) -> list[str]:
    """Fork ``n`` processes that call template.copy at the same moment; their failures."""
    import multiprocessing as mp

    from auto_infer.core import settings
    from auto_infer.install import template

    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(n), ctx.Queue()

    def child() -> None:
        barrier.wait()
        try:
            template.copy(settings.load(env))
        except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
            errors.put(f"{type(exc).__name__}: {exc}")

    procs = [ctx.Process(target=child) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found + [f"child exit {p.exitcode}" for p in procs if p.exitcode != 0]


def test_template_copies_at_once_do_not_trip_over_each_other(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Regression: the copy used one fixed temp name, so one run could rename another's temp
    file away (FileNotFoundError, exit 3) when two copied at once (in 6 of 40 rounds of 4 at once)."""
    rounds = count(25)
    bad = []
    for i in range(rounds):
        env = dict(workspace.env, AUTO_INFER_SGLANG_PROJECT_DIR=str(tmp_path / f"p{i}"))
        problems = _copy_in_children(env, 4)
        lock = tmp_path / f"p{i}" / "pixi.lock"
        if not problems and lock.read_bytes() != (workspace.template / "pixi.lock").read_bytes():
            problems.append("the project's pixi.lock is not the template's")
        if problems:
            bad.append(problems)
    record("template-copies-at-once", test="test_reliability_concurrency.py",
           what="4 processes copy the template into one fresh project at the same moment: none fails, "
                "the copy is the template's", tried=rounds, ok=rounds - len(bad))
    assert not bad, bad[:3]
