"""fork_map and start: the cache audit on every core, with the same answers (and errors) as on one."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from auto_infer.core.fanout import fork_map, start
from auto_infer.install import cache
from auto_infer.install.lockfile import Artifact

PARENT = os.getpid()


def _square(x: int) -> int:
    return x * x


def _dies_in_a_worker(x: int) -> int:
    if os.getpid() != PARENT:
        os._exit(3)                      # a worker killed half way: its share is done again here
    return x + 1


def _fails_on(bad: int) -> Callable[[int], int]:
    def fn(x: int) -> int:
        if x == bad:
            raise ValueError(f"item {x} is bad")
        return x
    return fn


def test_results_are_in_order_and_equal_to_one_core() -> None:
    items = list(range(500))
    assert fork_map(_square, items, per_worker=10) == [x * x for x in items]


def test_a_worker_that_dies_has_its_share_done_here() -> None:
    items = list(range(100))
    assert fork_map(_dies_in_a_worker, items, per_worker=10) == [x + 1 for x in items]


def _children() -> set[int]:
    """This process's children, reaped or not (zombies are listed until reaped); other tests may
    have left children of their own, so the test compares sets rather than asking for none."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


@pytest.mark.parametrize("bad", [0, 99], ids=["in-this-process-share", "in-a-worker-share"])
def test_an_error_is_raised_here_as_without_workers_and_no_worker_is_left(bad: int) -> None:
    """Item 0 is always this process's: it raises while the workers still run (they are killed
    and reaped); the last item is a worker's: its share is done again here and raises here."""
    before = _children()
    with pytest.raises(ValueError, match=f"item {bad} is bad"):
        fork_map(_fails_on(bad), list(range(100)), per_worker=10)
    assert _children() - before == set()     # every worker was reaped


def _marking(folder: Path) -> Callable[[int], int]:
    def fn(x: int) -> int:
        (folder / f"{os.getpid()}-{x}").touch()      # the test's trace; the audit itself only reads
        return x * 2
    return fn


def _sleeps(x: int) -> int:
    time.sleep(120)
    return x


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: start() forks no worker")
def test_started_workers_do_their_share_before_the_result_is_asked(tmp_path: Path) -> None:
    """start() forks at once and returns: the workers' share is done while this process does other
    work (the install loads the installer and reads the manifest meanwhile); result() then does this
    process's share and gives fork_map's answer."""
    items = list(range(40))
    workers = min(os.cpu_count() or 1, len(items) // 10)
    theirs = len(items) - len(range(0, len(items), workers))
    here = f"{os.getpid()}-"

    def done_by_workers() -> int:
        return sum(1 for p in tmp_path.iterdir() if not p.name.startswith(here))

    with start(_marking(tmp_path), items, per_worker=10) as pending:
        deadline = time.monotonic() + 60
        while done_by_workers() < theirs and time.monotonic() < deadline:    # a wait, not a timing check
            time.sleep(0.01)
        assert done_by_workers() == theirs
        assert not any(p.name.startswith(here) for p in tmp_path.iterdir())   # none of ours done yet
        assert pending.result() == [x * 2 for x in items]
        with pytest.raises(RuntimeError, match="taken once"):
            pending.result()


def test_leaving_the_block_without_the_result_ends_the_workers() -> None:
    """The install raises between start() and result() (no manifest, another lock): the workers,
    still busy, are killed and reaped as the block is left."""
    before = _children()
    with pytest.raises(LookupError, match="no manifest"):
        with start(_sleeps, list(range(40)), per_worker=10):
            raise LookupError("no manifest")
    assert _children() - before == set()


def _entry(pkgs: Path, i: int) -> Artifact:
    a = Artifact(kind="conda", name=f"pkg{i}", version="1.0", url=f"https://x/linux-64/pkg{i}-1.0-0.conda",
                 filename=f"pkg{i}-1.0-0.conda", sha256=None, size=None, build="0", subdir="linux-64")
    d = pkgs / a.cache_key
    (d / "info").mkdir(parents=True)
    (d / "info" / "index.json").write_text(json.dumps({"name": a.name, "version": "1.0", "build": "0"}))
    paths = []
    for j in range(5):
        rel = f"lib/m{i}/f{j}.py"
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text("x" * (j + 1))
        paths.append({"_path": rel, "path_type": "hardlink", "size_in_bytes": j + 1})
    (d / "info" / "paths.json").write_text(json.dumps({"paths": paths, "paths_version": 1}))
    return a


def test_the_audit_finds_each_damage_wherever_its_entry_falls(tmp_path: Path) -> None:
    """200 entries: the audit forks; a truncated file, a missing file and a missing entry are each
    found, whichever worker's share they are in, and named as on one core."""
    pkgs = tmp_path / "pkgs"
    entries = [_entry(pkgs, i) for i in range(200)]
    (pkgs / entries[3].cache_key / "lib/m3/f2.py").write_text("x")             # truncated: 1 byte, not 3
    (pkgs / entries[150].cache_key / "lib/m150/f0.py").unlink()                # missing
    (pkgs / entries[199].cache_key / "info" / "index.json").unlink()           # not in the cache

    class S:
        conda_pkgs_dir = pkgs

    got = cache.conda_problems(S(), entries)  # type: ignore[arg-type]
    one_core = [cache.conda_entry_problem(pkgs, a) for a in entries]
    assert got == one_core
    bad = {i: why for i, why in enumerate(got) if why}
    assert set(bad) == {3, 150, 199}, bad
    assert "lib/m3/f2.py has 1 bytes, not 3" in str(bad[3])
    assert "lib/m150/f0.py is missing" in str(bad[150])
    assert bad[199] == "not in the conda package cache"
