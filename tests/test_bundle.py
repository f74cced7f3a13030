"""bundle export / import across an air gap, for real: local channel + wheels, unshare -n, tampering."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from auto_infer.core.netns import can_unshare
from auto_infer.demo import mirror
from auto_infer.install import bundle_layout, lockfile
from tests.conftest import Built, Workspace, needs_netns
from tests.helpers import CLI, clean_env, realworld, run_cli

HELLO = "conda/linux-64/hello-1.0-0.tar.bz2"
WHEEL = "pypi/demo_extras-0.3-py3-none-any.whl"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fresh(tmp: Path, name: str, template: Path | None = None) -> dict[str, str]:
    """The air-gapped side: an empty workspace and cache; the template folder does not exist yet."""
    root = tmp / name
    return clean_env({"AUTO_INFER_WORKSPACE_DIR": str(root),
                      "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template or root / "template"),
                      "AUTO_INFER_SGLANG_CACHE_ROOT": str(root / "cache"),
                      "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_CHECK_MODULES": "demo_extras",
                      "HOME": str(tmp / "home")})


def export(env: dict[str, str], out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    r = run_cli(["bundle", "export", str(out), *extra], env)
    assert r.returncode == 0, r.stderr
    return r


def trusted(env: dict[str, str]) -> list[str]:
    """What a later install could trust: manifests, archives, extracted packages, wheels."""
    cache = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    found = [
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.is_file()
        and ".bundle-staging" not in p.parts
        and (p.name == "cache-manifest.json" or p.suffix in (".json", ".conda", ".bz2", ".whl"))
    ]
    return sorted(found)


def members(bundle: Path) -> list[str]:
    with tarfile.open(bundle) as tf:
        return tf.getnames()


@pytest.fixture(scope="module")
def bundle_file(built_channel: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle of the test channel's lock, exported from an unwarmed cache (export downloads)."""
    tmp = tmp_path_factory.mktemp("bundle")
    env = fresh(tmp, "build", template=built_channel.template)
    out = tmp / "auto-infer.bundle.tar"
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        export(env, out)
    return out


@needs_netns
@pytest.mark.netns
def test_export_import_then_offline_install_hard_links_from_the_imported_cache(
        workspace: Workspace, online: mirror.Mirror, bundle_file: Path, tmp_path: Path) -> None:
    assert run_cli(["warm"], workspace.env).returncode == 0
    out = tmp_path / "one.tar"
    r = export(workspace.env, out)
    assert f"→ {out}" in r.stderr and "members" in r.stderr                    # the closing line
    names = members(out)
    assert names[0] == "auto-infer-bundle.json"
    assert names[1:] == ["template/pixi.lock", "template/pixi.toml", "cache-manifest.json",
                         "conda/linux-64/hello-1.0-0.tar.bz2", f"conda/linux-64/{_python(names)}",
                         "conda/noarch/demo-data-2.0-0.tar.bz2", WHEEL]
    index = json.loads(tarfile.open(out).extractfile("auto-infer-bundle.json").read())  # type: ignore[union-attr]
    assert {m["path"] for m in index["members"]} == set(names[1:]) and index["since"] is None
    with tarfile.open(out) as tf:
        assert {(i.mtime, i.uid, i.gid, i.uname, i.mode) for i in tf} == {(0, 0, 0, "", 0o644)}
    # deterministic: again from the same cache, and from another cache that was never warmed
    again = tmp_path / "two.tar"
    export(workspace.env, again)
    assert out.read_bytes() == again.read_bytes() == bundle_file.read_bytes()
    online.stop()

    env = fresh(tmp_path, "airgap")
    r = run_cli(["bundle", "import", str(out)], env, net=False)
    assert r.returncode == 0, r.stderr
    cache = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    assert (cache / "conda" / "archives" / "linux-64" / "hello-1.0-0.tar.bz2").is_file()
    assert not (cache / ".bundle-staging").exists()
    assert sha(Path(env["AUTO_INFER_SGLANG_TEMPLATE_DIR"]) / "pixi.lock") == sha(workspace.template / "pixi.lock")
    r = run_cli(["install"], env, net=False)
    assert r.returncode == 0, r.stderr
    prefix = Path(env["AUTO_INFER_WORKSPACE_DIR"]) / "sglang-infer" / ".pixi" / "envs" / "default"
    big = prefix / "share" / "hello" / "big.bin"
    assert big.stat().st_ino == (cache / "pixi" / "pkgs" / "hello-1.0-0" / "share" / "hello" / "big.bin").stat().st_ino
    r = run_cli(["check"], env, net=False)
    assert r.returncode == 0 and "demo_extras 0.3" in r.stdout
    again_r = run_cli(["bundle", "import", str(out)], env, net=False)
    assert again_r.returncode == 0 and "already imported" in again_r.stderr


def _python(names: list[str]) -> str:
    return next(n.rsplit("/", 1)[1] for n in names if "/python-" in n)


# ---- delta bundles ---------------------------------------------------------------------------

def _without_demo_data(lock: Path) -> None:
    """A real, valid, smaller lock: demo-data dropped from the environment (same channel)."""
    kept = [ln for ln in lock.read_text().splitlines()
            if "/demo-data-2.0-0" not in ln or not ln.startswith("      - conda:")]
    lock.write_text("\n".join(kept) + "\n")


@needs_netns
@pytest.mark.netns
def test_a_delta_carries_only_the_added_package_and_needs_its_base(
        workspace: Workspace, online: mirror.Mirror, tmp_path: Path) -> None:
    full_lock = (workspace.template / "pixi.lock").read_bytes()
    _without_demo_data(workspace.template / "pixi.lock")
    old_sha = sha(workspace.template / "pixi.lock")
    base = tmp_path / "base.tar"
    export(workspace.env, base)
    assert not [n for n in members(base) if "demo-data" in n]
    env = fresh(tmp_path, "airgap")
    assert run_cli(["bundle", "import", str(base)], env, net=False).returncode == 0
    assert run_cli(["install"], env, net=False).returncode == 0

    (workspace.template / "pixi.lock").write_bytes(full_lock)               # the lock bump: one package more
    cache = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    delta = tmp_path / "delta.tar"
    export(workspace.env, delta, "--since", str(cache / "cache-manifest.json"))
    online.stop()
    carried = [n for n in members(delta) if n.startswith(("conda/", "pypi/"))]
    assert carried == ["conda/noarch/demo-data-2.0-0.tar.bz2"]
    assert delta.stat().st_size < base.stat().st_size

    # its base missing: refused, saying which lock's bundle to import first; nothing trusted
    other = fresh(tmp_path, "other")
    r = run_cli(["bundle", "import", str(delta)], other, net=False)
    assert r.returncode == 1 and f"delta bundle over the lock sha256 {old_sha[:12]}" in r.stderr
    assert "import first the bundle of the lock" in r.stderr and trusted(other) == []

    # an edited template is never overwritten: refused before anything is laid out
    toml = Path(env["AUTO_INFER_SGLANG_TEMPLATE_DIR"]) / "pixi.toml"
    original = toml.read_bytes()
    toml.write_bytes(original + b"# my edit\n")
    before = trusted(env)
    r = run_cli(["bundle", "import", str(delta)], env, net=False)
    assert r.returncode == 1 and "no bundle import put there" in r.stderr and trusted(env) == before
    assert toml.read_bytes().endswith(b"# my edit\n")
    toml.write_bytes(original)

    r = run_cli(["bundle", "import", str(delta)], env, net=False)
    assert r.returncode == 0, r.stderr
    new_sha = sha(workspace.template / "pixi.lock")
    assert (cache / "manifests" / f"{old_sha}.json").is_file() and (cache / "manifests" / f"{new_sha}.json").is_file()
    r = run_cli(["install"], env, net=False)
    assert r.returncode == 0, r.stderr
    prefix = Path(env["AUTO_INFER_WORKSPACE_DIR"]) / "sglang-infer" / ".pixi" / "envs" / "default"
    assert (prefix / "share" / "demo" / "a.txt").read_text() == "a\n"

    # the older lock is still served by the same cache (its own manifest): install it elsewhere
    old_tpl = tmp_path / "old-template"
    old_tpl.mkdir()
    shutil.copy(toml, old_tpl / "pixi.toml")
    (old_tpl / "pixi.lock").write_bytes(full_lock)
    _without_demo_data(old_tpl / "pixi.lock")
    env_old = dict(env, AUTO_INFER_SGLANG_TEMPLATE_DIR=str(old_tpl),
                   AUTO_INFER_SGLANG_PROJECT_DIR=str(tmp_path / "old-project"))
    r = run_cli(["install"], env_old, net=False)
    assert r.returncode == 0, r.stderr


# ---- interrupted import ----------------------------------------------------------------------

def test_sigkill_during_import_then_rerun_completes(bundle_file: Path, tmp_path: Path) -> None:
    """The bundle comes through a pipe that stops mid-member: kill the import there, for sure."""
    env = fresh(tmp_path, "airgap")
    staging = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"]) / ".bundle-staging"
    with tarfile.open(bundle_file) as tf:
        cut = tf.getmember(WHEEL).offset_data + 10
    fifo = tmp_path / "bundle.pipe"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*CLI, "bundle", "import", str(fifo)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    with open(fifo, "wb") as w:
        w.write(bundle_file.read_bytes()[:cut])
        w.flush()
        deadline = time.monotonic() + 60
        while not (staging / "members" / "conda" / "noarch" / "demo-data-2.0-0.tar.bz2").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert staging.exists() and trusted(env) == []
    r = run_cli(["bundle", "import", str(bundle_file)], env)
    assert r.returncode == 0, r.stderr
    assert "removing what an interrupted import left" in r.stderr and not staging.exists()
    assert (Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"]) / "cache-manifest.json").is_file()
    r = run_cli(["install"], env)
    assert r.returncode == 0, r.stderr


# ---- the real lock, and usage ------------------------------------------------------------------

REAL = realworld("sglang-infer")


@pytest.mark.skipif(not (REAL / "pixi.lock").exists(), reason="shared/realworld not present")
def test_realworld_dry_run_names_exactly_the_211_artifacts(tmp_path: Path) -> None:
    template = tmp_path / "template"
    shutil.copytree(REAL, template)
    env = dict(fresh(tmp_path, "build", template=template), AUTO_INFER_PLATFORM="linux-64")
    r = run_cli(["bundle", "export", "--dry-run"], env)
    assert r.returncode == 0, r.stderr
    listed = [ln.split("\t")[0] for ln in r.stdout.splitlines() if ln.startswith(("conda/", "pypi/"))]
    locked = lockfile.read(template / "pixi.lock", "default", "linux-64")
    assert len(listed) == len(set(listed)) == 211
    assert set(listed) == {bundle_layout.member_path(a) for a in locked.artifacts}
    assert "211 artifacts (49 conda + 162 PyPI) of 211 in the lock" in r.stdout
    assert not (tmp_path / "build" / "cache").exists()          # a listing downloads nothing


@pytest.mark.parametrize("args", [["bundle"], ["bundle", "frobnicate", "x"], ["bundle", "import"],
                                  ["bundle", "import", "x", "--since", "y"]])
def test_bad_bundle_arguments_print_the_usage(args: list[str], tmp_path: Path) -> None:
    """A usage error: exit 2, like every other command line that is wrong (issue 19)."""
    r = run_cli(args, fresh(tmp_path, "ws"))
    assert r.returncode == 2 and "usage: auto-infer bundle export FILE" in r.stderr and "Traceback" not in r.stderr


def test_import_of_a_missing_file_says_so(tmp_path: Path) -> None:
    r = run_cli(["bundle", "import", str(tmp_path / "nope.tar")], fresh(tmp_path, "ws"))
    assert r.returncode == 1 and "no bundle file at" in r.stderr


def test_import_of_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    r = run_cli(["bundle", "import", str(tmp_path)], fresh(tmp_path, "ws"))
    assert r.returncode == 1 and f"{tmp_path} is a folder, not a bundle file" in r.stderr, r.stderr
    assert "fix:" in r.stderr and "Traceback" not in r.stderr


def test_export_replaces_an_earlier_bundle_but_never_a_users_other_file(
        built_channel: Built, bundle_file: Path, tmp_path: Path) -> None:
    env = fresh(tmp_path, "again", template=built_channel.template)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["bundle", "export", str(notes)], env)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "is not an auto-infer bundle: export would replace it" in r.stderr
        assert notes.read_text() == "my notes\n"
        earlier = tmp_path / "earlier.tar"
        shutil.copy(bundle_file, earlier)
        export(env, earlier)                           # an earlier bundle: replaced, as before
    assert members(earlier)[0] == "auto-infer-bundle.json"


@pytest.mark.skipif(not can_unshare() or not shutil.which("unshare"), reason="needs root and unshare -m")
def test_export_onto_a_read_only_mount_is_a_user_error(built_channel: Built, tmp_path: Path) -> None:
    """FILE on a read-only mount, or in a new folder there: exit 1 naming the folder (was exit 3, EROFS)."""
    env = fresh(tmp_path, "again", template=built_channel.template)
    ro = tmp_path / "ro"
    ro.mkdir()
    script = f'mount -t tmpfs -o ro tmpfs "{ro}" && for f in "$@"; do {" ".join(CLI)} bundle export "$f"; done'
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(ro / "x.tar"), str(ro / "new" / "x.tar")],
                           env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1 and r.stderr.count("fix:   name a place you can write") == 2, r.stderr
    for folder in (ro, ro / "new"):
        assert f"cannot write the bundle file in {folder}: Read-only file system\n  where: {folder}\n" in r.stderr


def test_export_dry_run_writes_nothing(built_channel: Built, tmp_path: Path) -> None:
    """`--dry-run`: "list what the bundle would carry; write nothing". It ran as a doit task under the run
    lock: it created the workspace with doit's state and the lock file, and waited for a running install."""
    env = fresh(tmp_path, "build", template=built_channel.template)
    r = run_cli(["bundle", "export", "--dry-run"], env)
    assert r.returncode == 0, r.stderr
    assert "to download from" in r.stdout and "artifacts (" in r.stdout
    assert not Path(env["AUTO_INFER_WORKSPACE_DIR"]).exists()
    wrong = run_cli(["bundle", "import", "x.tar", "--dry-run"], env)
    assert wrong.returncode == 2 and "usage:" in wrong.stderr
