"""The one cache importer (issue 19.1) and what a careless user does to it (issue 21.3, 21.8, 21.10).

Real bundles and packs of the test channel, the real CLI in child processes; a read-only cache
root is a real read-only bind mount in a mount namespace of its own.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from auto_infer.core.netns import can_unshare
from auto_infer.core.settings import load
from auto_infer.install import archives
from auto_infer.install import bundle_format as fmt
from auto_infer.install.pixipack import import_pixi_pack
from tests.conftest import Built, Workspace
from tests.helpers import CLI, run_cli
from tests.pixipack_fixture import build_pack
from tests.test_bundle import HELLO, WHEEL, bundle_file, fresh

__all__ = ["bundle_file"]


def _cache(env: dict[str, str]) -> Path:
    return Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])


def _imported(bundle: Path, tmp_path: Path) -> dict[str, str]:
    env = fresh(tmp_path, "airgap")
    r = run_cli(["bundle", "import", str(bundle)], env)
    assert r.returncode == 0, r.stderr
    return env


def test_a_done_marker_is_not_trusted_once_the_cache_lost_files(bundle_file: Path, tmp_path: Path) -> None:
    """21.3: the import record says "imported", the cache lost a package, its archive and a wheel:
    the same bundle imports them again, and the offline install then works (no loop)."""
    env = _imported(bundle_file, tmp_path)
    cache = _cache(env)
    again = run_cli(["bundle", "import", str(bundle_file)], env)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    shutil.rmtree(cache / "pixi" / "pkgs" / "hello-1.0-0" / "bin")
    (cache / "conda" / "archives" / "linux-64" / Path(HELLO).name).unlink()
    (cache / "pypi" / "wheels" / Path(WHEEL).name).unlink()
    r = run_cli(["bundle", "import", str(bundle_file)], env)
    assert r.returncode == 0, r.stderr
    assert "importing it again" in r.stderr and "nothing to do" not in r.stderr, r.stderr
    assert (cache / "pixi" / "pkgs" / "hello-1.0-0" / "bin" / "hello").is_file()
    inst = run_cli(["install"], env)          # the lock's channel is not served: the cache only
    assert inst.returncode == 0, inst.stderr


def test_leftovers_of_interrupted_imports_are_removed(bundle_file: Path, tmp_path: Path) -> None:
    """21.10: whatever a killed import (of this or an older version) left is removed by the next."""
    env = fresh(tmp_path, "airgap")
    cache = _cache(env)
    left = [cache / ".fill-package-cache.abc" / "prefix", cache / ".pixi-pack-import.xyz" / "channel",
            cache / ".bundle-staging" / "members", cache / "pixi" / "pkgs" / ".auto-infer-extracting.hello-1.0-0"]
    for p in left:
        p.mkdir(parents=True)
    r = run_cli(["bundle", "import", str(bundle_file)], env)
    assert r.returncode == 0, r.stderr
    assert not [p for p in left if p.exists()]
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []


def _rewrite(src: Path, dest: Path, member: str, data: bytes) -> None:
    """``member`` replaced by ``data``, the index updated to match (a bundle consistent but for the lock)."""
    import hashlib
    with tarfile.open(src) as tf:
        index = json.loads(tf.extractfile(fmt.INDEX).read())  # type: ignore[union-attr]
        for m in index["members"]:
            if m["path"] == member:
                m["sha256"], m["size"] = hashlib.sha256(data).hexdigest(), len(data)
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
            for info in tf:
                body = tf.extractfile(info).read()  # type: ignore[union-attr]
                body = (json.dumps(index).encode() if info.name == fmt.INDEX else data if info.name == member
                        else body)
                info.size = len(body)
                out.addfile(info, io.BytesIO(body))


def test_a_garbled_lock_inside_a_bundle_names_the_bundle(bundle_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    _rewrite(bundle_file, bad, "template/pixi.lock", b"version: 6\nenvironments: [[[\n")
    env = fresh(tmp_path, "airgap")
    r = run_cli(["bundle", "import", str(bad)], env)
    assert r.returncode == 1, r.stderr
    assert "the bundle's template/pixi.lock cannot be read" in r.stderr, r.stderr
    assert ".bundle-staging" not in r.stderr and "restore the lock" not in r.stderr, r.stderr
    assert f"where: {bad}" in r.stderr


def test_an_index_over_the_limit_is_called_too_big(tmp_path: Path) -> None:
    """21.10: not "not the bundle index (found the bundle index)"."""
    info = fmt.tar_info(fmt.INDEX, fmt.INDEX_MAX + 1)
    bad = tmp_path / "big.tar"
    bad.write_bytes(info.tobuf(fmt.TAR_FORMAT) + b"{" * 4096)
    r = run_cli(["bundle", "import", str(bad)], fresh(tmp_path, "airgap"))
    assert r.returncode == 1, r.stderr
    assert f"is {fmt.INDEX_MAX + 1} bytes; an index is never more than 64 MiB" in r.stderr, r.stderr
    assert "found" not in r.stderr


def test_a_damaged_self_extracting_pack_is_not_called_a_truncated_bundle(built_channel: Built,
                                                                         tmp_path: Path) -> None:
    pack = build_pack(built_channel.channel.root / "channel", built_channel.channel.wheel_files,
                      tmp_path / "environment.sh", executable=True)
    data = pack.read_bytes()
    pack.write_bytes(data[: data.index(b"\n@@END_HEADER@@\n") + 400])      # cut inside the first member
    env = fresh(tmp_path, "airgap", template=built_channel.template)
    assert run_cli(["template"], env).returncode == 0
    r = run_cli(["bundle", "import", str(pack)], env)
    assert r.returncode == 1, r.stderr
    assert "bundle is truncated" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "damaged or truncated" in r.stderr and "nothing was imported" in r.stderr, r.stderr


needs_mount_ns = pytest.mark.skipif(not can_unshare() or not shutil.which("unshare"),
                                    reason="needs root and unshare -m")


@needs_mount_ns
@pytest.mark.parametrize("what", ["cache root", "verified record"])
def test_a_read_only_cache_root_is_called_read_only(bundle_file: Path, tmp_path: Path, what: str) -> None:
    """21.8/21.10: the cache root mounted read-only: exit 1 saying so, not "disk full", not exit 3."""
    env = fresh(tmp_path, "airgap")
    cache = _cache(env)
    if what == "verified record":                 # imported before, then a wheel's record is stale
        env = _imported(bundle_file, tmp_path)
        shutil.rmtree(cache / "pixi" / "pkgs" / "hello-1.0-0")
    cache.mkdir(parents=True, exist_ok=True)
    script = (f'mount --bind "{cache}" "{cache}" && mount -o remount,bind,ro "{cache}" && '
              f'exec "$@"')
    cmd = ["unshare", "-m", "sh", "-c", script, "sh", *CLI, "bundle", "import", str(bundle_file)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 1, r.stderr
    assert "read-only" in r.stderr and "no space" not in r.stderr and "crash" not in r.stderr, r.stderr


def test_the_package_cache_is_filled_by_worker_processes(workspace: Workspace, built_channel: Built,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One archive per worker (INLINE=1): the worker-process path extracts what rattler then installs."""
    monkeypatch.setattr(archives, "INLINE", 1)
    assert run_cli(["template"], workspace.env).returncode == 0
    pack = build_pack(built_channel.channel.root / "channel", built_channel.channel.wheel_files,
                      tmp_path / "environment.tar")
    assert import_pixi_pack(load(workspace.env), pack).startswith("imported 4 artifacts")
    pkgs = workspace.cache_root / "pixi" / "pkgs"
    assert len([p for p in pkgs.glob("*.lock") if (p.parent / p.stem / "info" / "index.json").is_file()]) == 3
    assert not list(pkgs.glob(".auto-infer-extracting.*"))
    r = run_cli(["install"], workspace.env)          # nothing served: from the filled cache only
    assert r.returncode == 0, r.stderr
    assert (workspace.prefix / "bin" / "hello").stat().st_nlink > 1     # hard-linked from pkgs/


def test_archives_a_dead_worker_held_are_extracted_by_another(workspace: Workspace, built_channel: Built,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The extractor deals archives as it goes: a worker killed with archives in hand (or before any)
    has them extracted by a live one; the fill ends complete, and rattler installs from it."""
    from auto_infer.install.health import locked_env

    monkeypatch.setattr(archives, "INLINE", 1)
    monkeypatch.setattr(archives.os, "cpu_count", lambda: 2)
    assert run_cli(["template"], workspace.env).returncode == 0
    pack = build_pack(built_channel.channel.root / "channel", built_channel.channel.wheel_files,
                      tmp_path / "environment.tar")
    settings = load(workspace.env)
    import_pixi_pack(settings, pack)                     # the archives are in the store now
    pkgs = workspace.cache_root / "pixi" / "pkgs"
    shutil.rmtree(pkgs)
    conda = locked_env(settings).conda
    done: list[int] = []
    with archives.Extractor(settings, len(conda)) as pool:
        assert pool.workers == 2 and not pool.procs        # started with the first archive
        pool.add(conda[0])
        pool.procs[0].kill()
        for a in conda[1:]:
            pool.add(a)
        pool.wait(done.append)
    assert done and done[-1] == len(conda) == 3
    assert len([p for p in pkgs.glob("*.lock") if (p.parent / p.stem / "info" / "index.json").is_file()]) == 3
    r = run_cli(["install"], workspace.env)
    assert r.returncode == 0, r.stderr
