"""Hostile pixi.lock files and lock-related variables: exit 1, one clear message naming the file or
the variable, no traceback, and nothing touched (environment, manifest, doit state)."""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from auto_infer.core.errors import UserError
from auto_infer.demo import mirror
from auto_infer.install import lockfile
from tests.helpers import realworld, run_cli
from tests.reliability_tools import count, doit_db_problem, health, no_traceback, record, workspace_env

REAL = realworld("sglang-infer/pixi.lock")


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory, built_channel) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A warmed, installed workspace whose template is a private copy of the test channel's."""
    root = tmp_path_factory.mktemp("locks")
    template = root / "template"
    shutil.copytree(built_channel.template, template)
    env = workspace_env(root / "ws", template)
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], env)
        assert r.returncode == 0, r.stderr
    assert health(env) is None
    return env


def _put(data: bytes) -> Callable[[Path], None]:
    return lambda lock: lock.write_bytes(data)


CASES: dict[str, tuple[Callable[[Path], None] | None, dict[str, str], str]] = {
    # name: (change to the template's pixi.lock, env overrides, text the message must hold)
    "truncated at half": (lambda lock: lock.write_bytes(lock.read_bytes()[: len(lock.read_bytes()) // 2]), {},
                          "pixi.lock"),
    "truncated after the version line": (lambda lock: lock.write_bytes(lock.read_bytes()[:12]), {},
                                         "pixi.lock cannot be parsed"),
    "empty": (_put(b""), {}, "no 'version:' line"),
    "random bytes": (_put(random.Random(1).randbytes(4096)), {}, "no 'version:' line"),
    "unknown version 99": (lambda lock: lock.write_bytes(re.sub(rb"(?m)^version: \d+$", b"version: 99",
                                                                lock.read_bytes())),
                           {}, "format version 99 is not supported"),
    "YAML of the wrong shape": (_put(b"version: 6\nenvironments: 5\npackages: nope\n"), {}, "cannot be parsed"),
    "a folder named pixi.lock": (lambda lock: (lock.unlink(), lock.mkdir()), {}, "the template has no pixi.lock"),
    "environment the lock lacks": (None, {"AUTO_INFER_SGLANG_PIXI_ENV": "nope"},
                                   "pixi.lock has no environment 'nope'"),
    "environment name with a path": (None, {"AUTO_INFER_SGLANG_PIXI_ENV": "../../etc"},
                                     "AUTO_INFER_SGLANG_PIXI_ENV"),
    "platform the lock lacks": (None, {"AUTO_INFER_PLATFORM": "win-64"}, "not locked for win-64"),
    "lock timeout not a number": (None, {"AUTO_INFER_LOCK_TIMEOUT": "soon"}, "AUTO_INFER_LOCK_TIMEOUT"),
}


def _try_case(env: dict[str, str], change: Callable[[Path], None] | None, extra: dict[str, str],
              expect: str, task: str) -> list[str]:
    template = Path(env["AUTO_INFER_SGLANG_TEMPLATE_DIR"])
    good = (template / "pixi.lock").read_bytes()
    ws = Path(env["AUTO_INFER_WORKSPACE_DIR"])
    prefix, manifest = ws / "sglang-infer" / ".pixi" / "envs", ws / ".cache" / "sglang-infer" / "cache-manifest.json"
    before, manifest_before = snapshot(prefix), manifest.read_bytes()
    if change:
        change(template / "pixi.lock")
    try:
        r = run_cli([task], dict(env, **extra), net=True)
    finally:
        lock = template / "pixi.lock"
        if lock.is_dir():
            lock.rmdir()
        lock.write_bytes(good)
    problems = []
    if r.returncode != 1:
        problems.append(f"exit {r.returncode}")
    if not no_traceback(r.stderr):
        problems.append("traceback or internal error")
    if expect not in r.stderr:
        problems.append(f"message lacks {expect!r}: {r.stderr[-300:]}")
    if snapshot(prefix) != before:
        problems.append("the environment changed")
    if manifest.read_bytes() != manifest_before:
        problems.append("the manifest changed")
    if (ws / "sglang-infer" / ".pixi" / "auto-infer" / "installing-default.json").exists():
        problems.append("an install marker was left")
    db = doit_db_problem(ws / ".auto-infer" / "doit.sqlite")
    if db:
        problems.append(db)
    return problems


def test_hostile_locks_and_variables_are_refused_cleanly(healthy: dict[str, str]) -> None:
    bad: dict[str, list[str]] = {}
    tried = 0
    for name, (change, extra, expect) in CASES.items():
        for task in ("install", "warm") if name == "unknown version 99" else ("install",):
            tried += 1
            problems = _try_case(healthy, change, extra, expect, task)
            if problems:
                bad[f"{name} ({task})"] = problems
    rng = random.Random(11)
    for _ in range(count(1)):        # truncations at random points, through the whole CLI
        tried += 1
        cut = rng.randrange(1, 1400)
        problems = _try_case(healthy, lambda lock, c=cut: lock.write_bytes(lock.read_bytes()[:c]), {},
                             "pixi.lock", "install")
        if problems and problems != ["exit 0"]:
            bad[f"truncated at byte {cut}"] = problems
    r = run_cli(["install"], healthy)            # and afterwards the environment is still trusted as is
    if r.returncode != 0 or not ("up to date" in r.stderr or "nothing to do" in r.stderr):
        bad["afterwards"] = [r.stderr[-300:]]
    record("hostile-locks-cli", test="test_reliability_locks.py",
           what="hostile pixi.lock / lock variables through `install` (and `warm` for one): truncated, empty, "
                "random bytes, version 99, wrong YAML shape, a folder, "
                "AUTO_INFER_SGLANG_PIXI_ENV=nope or a path, AUTO_INFER_PLATFORM=win-64, a bad lock timeout, "
                "random truncations: exit 1, message names file/variable, no traceback, env + manifest + "
                "doit state untouched; afterwards `install` is still up to date",
           tried=tried, ok=tried - len(bad), cases=sorted(CASES))
    assert not bad, bad


def _mutations(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        lines = data.split(b"\n")
        kind = i % 5
        if kind == 0:
            out.append(data[: rng.randrange(len(data))])
        elif kind == 1:
            b = bytearray(data)
            for _ in range(rng.randint(1, 5)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            out.append(bytes(b))
        elif kind == 2:
            del lines[rng.randrange(len(lines))]
            out.append(b"\n".join(lines))
        elif kind == 3:
            lines.insert(rng.randrange(len(lines)), lines[rng.randrange(len(lines))])
            out.append(b"\n".join(lines))
        else:
            k = rng.randrange(len(lines))
            lines[k] = lines[k][: rng.randrange(len(lines[k]) + 1)]
            out.append(b"\n".join(lines))
    return out


SPECIAL = [b"version: 6\n\x00\x00garbage", b"version: 6\nenvironments:\n  d\xe9fault: {}\n",
           b"version: 6\nenvironments: " + b"[" * 20000 + b"\n", b"version: 6\n" + b"a:\n " * 3000,
           b"version: 6\na: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b]\n",
           b"version: 99999999999999999999\n", b"version: 6\nenvironments: {}\npackages: []\n",
           b"version: 6\nenvironments:\n  default:\n    channels: ~\n    packages: ~\npackages: ~\n"]


def test_lock_reader_never_fails_other_than_with_a_user_error(built_channel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Mutated locks (cut, bytes flipped, lines dropped/doubled/cut) either parse or raise UserError."""
    sources = [built_channel.template / "pixi.lock"] + ([REAL] if REAL.is_file() else [])
    rng = random.Random(5)
    target = tmp_path / "pixi.lock"
    outcome = {"parsed": 0, "user error": 0}
    bugs = []
    inputs = list(SPECIAL)       # NUL bytes, not UTF-8, nested 20000 deep, a YAML alias bomb, ...
    for src in sources:
        inputs += _mutations(src.read_bytes(), rng, count(100))
    for data in inputs:
        target.write_bytes(data)
        try:
            lockfile.read(target, "default", "linux-64")
            outcome["parsed"] += 1
        except UserError as exc:
            outcome["user error"] += 1
            if str(target) != exc.where:
                bugs.append(f"message does not name the file: {exc}")
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            bugs.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    tried = sum(outcome.values()) + len(bugs)
    record("lock-reader-fuzz", test="test_reliability_locks.py",
           what="mutated pixi.lock files (cut, bytes flipped, lines dropped/doubled/cut; of the test lock"
                + (" and the real 211-package SGLang lock" if REAL.is_file() else "") + ") and special ones "
                "(NUL, not UTF-8, nested 20000 deep, an alias bomb, empty sections) read by lockfile.read: "
                "a LockedEnv or a UserError naming the file, nothing else",
           tried=tried, ok=tried - len(bugs), **outcome)
    assert not bugs, bugs[:5]
