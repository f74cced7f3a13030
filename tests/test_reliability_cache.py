"""Damaged caches: what `install` detects before touching the environment, with no network
connection (proxies point at a counting listener), and that `warm` online repairs each case.

Detected before anything is touched (exit 1, the artifact named, the advice is `warm`):
a wheel whose bytes changed (even with its mtime put back), a missing wheel, a file missing from or
truncated in an extracted conda package, its metadata unreadable, a package cached under another
sha256. Not detected: a same-size change inside an extracted conda package (sizes are checked, not
hashes) -- see test_same_size_change_inside_a_conda_package_is_a_documented_limit."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from auto_infer.demo import mirror
from tests.helpers import run_cli
from tests.reliability_tools import (
    CountingListener,
    health,
    no_traceback,
    proxy_env,
    record,
    workspace_env,
)

WHEEL = "pypi/wheels/demo_extras-0.3-py3-none-any.whl"
HELLO = "pixi/pkgs/hello-1.0-0"


@pytest.fixture(scope="module")
def warmed_cache_dir(tmp_path_factory: pytest.TempPathFactory, built_channel) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cache")
    env = workspace_env(root / "seed", built_channel.template, root / "cache")
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], env)
        assert r.returncode == 0, r.stderr
    return root / "cache"


def _flip_in_place_keep_mtime(p: Path) -> None:
    st = p.stat()
    with open(p, "r+b") as fh:
        fh.seek(st.st_size // 2)
        b = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _append(p: Path) -> None:
    with open(p, "ab") as fh:
        fh.write(b"tampered")


def _lock_sha(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[8:40] = bytes(32)
    p.write_bytes(bytes(raw))


# name: (path in the cache, damage, text the refusal must hold)
CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "wheel appended to": (WHEEL, _append, "wheel content changed"),
    "wheel byte flipped in place, mtime put back": (WHEEL, _flip_in_place_keep_mtime, "wheel content changed"),
    "wheel deleted": (WHEEL, Path.unlink, "wheel not in"),
    "conda file deleted": (f"{HELLO}/share/hello/big.bin", Path.unlink, "share/hello/big.bin is missing"),
    "conda file truncated": (f"{HELLO}/share/hello/big.bin", lambda p: p.write_bytes(b"x"),
                             "share/hello/big.bin has 1 bytes, not 200000"),
    "conda index.json garbage": (f"{HELLO}/info/index.json", lambda p: p.write_bytes(b"{{"), "is unreadable"),
    "conda paths.json garbage": (f"{HELLO}/info/paths.json", lambda p: p.write_bytes(b"garbage"), "is unreadable"),
    "conda package dir removed": (HELLO, shutil.rmtree, "not in the conda package cache"),
    "conda cached under another sha256": (f"{HELLO}.lock", _lock_sha, "cached under another sha256"),
}


# `warm` online repairs these (the others are plain downloads of what is missing or changed)
REPAIRED = {"wheel byte flipped in place, mtime put back", "conda file deleted", "conda file truncated",
            "conda paths.json garbage"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_damaged_cache_is_refused_offline_then_repaired_by_warm(warmed_cache_dir: Path, built_channel,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path, name: str) -> None:
    rel, damage, text = CASES[name]
    cache = tmp_path / "cache"
    shutil.copytree(warmed_cache_dir, cache, symlinks=True)
    damage(cache / rel)
    env = workspace_env(tmp_path / "ws", built_channel.template, cache)
    prefix = Path(env["AUTO_INFER_SGLANG_PROJECT_DIR"]) / ".pixi" / "envs" / "default"
    problems = []
    with CountingListener() as proxy:
        r = run_cli(["install"], dict(env, **proxy_env(proxy.proxy_url())))
        connections = proxy.count
    if r.returncode != 1 or text not in r.stderr or "auto-infer warm" not in r.stderr:
        problems.append(f"install: exit {r.returncode}, wanted 1 and {text!r}: {r.stderr[-400:]}")
    if not no_traceback(r.stderr):
        problems.append("traceback")
    if connections:
        problems.append(f"the offline install made {connections} connection(s): {proxy.first_lines}")
    if prefix.exists():
        problems.append("the environment was touched before the refusal")
    if name in REPAIRED:
        with mirror.Mirror(built_channel.channel.root, built_channel.port):
            w = run_cli(["warm"], env)
        if w.returncode != 0:
            problems.append(f"warm did not repair it: {w.stderr[-400:]}")
        reason = health(env)
        if reason:
            problems.append(f"after warm: {reason}")
    _tally(name, problems, connections)
    assert not problems, problems


_RESULTS: dict[str, list[str]] = {}
_CONNECTIONS: list[int] = []


def _tally(name: str, problems: list[str], connections: int) -> None:
    _RESULTS[name] = problems
    _CONNECTIONS.append(connections)
    bad = sorted(k for k, v in _RESULTS.items() if v)
    record("damaged-cache", test="test_reliability_cache.py",
           what="a cached wheel or extracted conda package damaged (appended, a byte flipped with the mtime "
                "put back, deleted, truncated, metadata garbage, another sha256): offline `install` with "
                "proxies at a counting listener exits 1 naming the artifact before touching the environment, "
                "0 connections; `warm` online then repairs it (environment healthy; checked for 4 of them)",
           tried=len(_RESULTS), ok=len(_RESULTS) - len(bad), proxy_connections=sum(_CONNECTIONS), failed=bad)


def test_same_size_change_inside_a_conda_package_is_a_documented_limit(warmed_cache_dir: Path, built_channel,  # type: ignore[no-untyped-def]
                                                                       tmp_path: Path) -> None:
    """Documented in docs/reliability.md: extracted conda files are checked by size, not hashed, so a
    same-size edit is installed as it is. (With hard links, an in-place edit of a cache file also
    changes every environment linked to it.) If this starts failing, detection got better:
    update the doc."""
    cache = tmp_path / "cache"
    shutil.copytree(warmed_cache_dir, cache, symlinks=True)
    script = cache / HELLO / "bin" / "hello"
    data = script.read_bytes()
    script.unlink()
    script.write_bytes(data.replace(b"hello", b"HACKD"))
    env = workspace_env(tmp_path / "ws", built_channel.template, cache)
    r = run_cli(["install"], env)
    assert r.returncode == 0, r.stderr
    installed = Path(env["AUTO_INFER_SGLANG_PROJECT_DIR"]) / ".pixi" / "envs" / "default" / "bin" / "hello"
    assert b"HACKD" in installed.read_bytes()
