"""A tampered bundle is refused, naming the member and the hashes, with nothing trusted afterwards."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from auto_infer.install import lockfile
from tests.helpers import run_cli
from tests.test_bundle import HELLO, WHEEL, bundle_file, fresh, trusted

__all__ = ["bundle_file"]      # the module-scoped fixture: one good bundle for every case here


# ---- refusals: nothing trusted ---------------------------------------------------------------

def _rewrite(src: Path, dest: Path, edit: object) -> None:
    """Copy a bundle member by member through ``edit(info, data) -> [(info, data), ...]``."""
    with tarfile.open(src) as tf, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for info in tf:
            data = tf.extractfile(info).read()  # type: ignore[union-attr]
            for new_info, new_data in edit(info, data):  # type: ignore[operator]
                new_info.size = len(new_data)
                out.addfile(new_info, io.BytesIO(new_data))


def _index_of(bundle: Path) -> dict[str, dict[str, object]]:
    with tarfile.open(bundle) as tf:
        raw = tf.extractfile("auto-infer-bundle.json").read()  # type: ignore[union-attr]
    return {m["path"]: m for m in json.loads(raw)["members"]}


def _flip(bundle: Path, bad: Path) -> str:
    shutil.copy(bundle, bad)
    with tarfile.open(bundle) as tf:
        at = tf.getmember(HELLO).offset_data + 100
    data = bytearray(bad.read_bytes())
    data[at] ^= 0xFF
    bad.write_bytes(bytes(data))
    with tarfile.open(bad) as tf:
        actual = hashlib.sha256(tf.extractfile(HELLO).read()).hexdigest()  # type: ignore[union-attr]
    return f"member {HELLO} is damaged: sha256 {actual}, the index says {_index_of(bundle)[HELLO]['sha256']}"


def _link(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = [(info, data)]
    if info.name == "cache-manifest.json":
        link = tarfile.TarInfo("conda/linux-64/evil.conda")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.append((link, b""))
    return out


def _forged(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Another hello archive AND an index that agrees with it: only the lock's sha256 catches it."""
    evil = b"not the archive the lock names"
    if info.name == "auto-infer-bundle.json":
        index = json.loads(data)
        for m in index["members"]:
            if m["path"] == HELLO:
                m["sha256"], m["size"] = hashlib.sha256(evil).hexdigest(), len(evil)
        data = json.dumps(index).encode()
    return [(info, evil if info.name == HELLO else data)]


def _renamed(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    if info.name == WHEEL:
        info.name = "pypi/demo_extras-0.4-py3-none-any.whl"
    return [(info, data)]


def _dotdot(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    if info.name == WHEEL:
        info.name = "pypi/../../../evil.txt"
    return [(info, data)]


def _twice(info: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(info, data), (info, data)] if info.name == WHEEL else [(info, data)]


@pytest.mark.parametrize("case", ["flipped", "truncated", "renamed", "dotdot", "link", "twice", "forged"])
def test_a_tampered_bundle_is_refused_naming_the_member_and_nothing_is_trusted(
        case: str, bundle_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    if case == "flipped":
        expected = _flip(bundle_file, bad)
    elif case == "truncated":
        bad.write_bytes(bundle_file.read_bytes()[: bundle_file.stat().st_size // 2])
        expected = "the bundle is truncated"
    else:
        edit = {"renamed": _renamed, "dotdot": _dotdot, "link": _link, "twice": _twice, "forged": _forged}[case]
        _rewrite(bundle_file, bad, edit)
        lock_sha = next(a.sha256 for a in _lock_artifacts(bundle_file) if a.filename == "hello-1.0-0.tar.bz2")
        expected = {"renamed": "member pypi/demo_extras-0.4-py3-none-any.whl is not in the bundle's index",
                    "dotdot": "'pypi/../../../evil.txt'", "link": "a link, device or folder",
                    "twice": f"member {WHEEL} appears twice", "forged": f"the lock says {lock_sha}"}[case]
    env = fresh(tmp_path, "airgap")
    r = run_cli(["bundle", "import", str(bad)], env)
    assert r.returncode == 1, r.stderr
    assert expected in r.stderr and "nothing of it was trusted" in r.stderr and "Traceback" not in r.stderr
    assert trusted(env) == []
    assert not (Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"]) / ".bundle-staging").exists()
    assert not list(tmp_path.rglob("evil*"))
    assert not Path(env["AUTO_INFER_SGLANG_TEMPLATE_DIR"]).exists()
    assert run_cli(["install"], env).returncode == 1      # and install refuses: no manifest


def _lock_artifacts(bundle: Path) -> list[lockfile.Artifact]:
    with tarfile.open(bundle) as tf:
        text = tf.extractfile("template/pixi.lock").read()  # type: ignore[union-attr]
    path = bundle.with_name("lock-of-bundle.lock")
    path.write_bytes(text)
    return list(lockfile.read(path, "default", "linux-64").artifacts)
