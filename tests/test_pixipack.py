"""pixi-pack archives (tar and self-extracting .sh) built from the test channel, imported into an
empty workspace whose project has the original pixi.lock, then installed offline inside
`unshare -n`: the original lock, no re-lock. Tampered, foreign and unsafe packs are refused."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import sha256_file
from auto_infer.core.settings import load
from auto_infer.install import lockfile
from auto_infer.install.pixipack import import_pixi_pack, is_pixi_pack
from auto_infer.install.pixipack_archive import Base64View, payload_start
from tests.conftest import Built, Workspace, needs_netns
from tests.helpers import clean_env, offline, realworld, run_cli
from tests.pixipack_fixture import build_pack, flip_byte, member_info, write_tar

# `bundle import` will call import_pixi_pack; until it is wired, the tests call it the same way
IMPORT = ("import sys\nfrom auto_infer.core.errors import UserError\nfrom auto_infer.core.settings import load\n"
          "from auto_infer.install.pixipack import import_pixi_pack\n"
          "try:\n    print(import_pixi_pack(load(), sys.argv[1]))\n"
          "except UserError as exc:\n    print(exc, file=sys.stderr)\n    sys.exit(1)\n")


def _channel(built: Built) -> Path:
    return built.channel.root / "channel"


def _pack(built: Built, out: Path, **kw: object) -> Path:
    return build_pack(_channel(built), built.channel.wheel_files, out, **kw)  # type: ignore[arg-type]


def _templated(ws: Workspace) -> None:
    r = run_cli(["template"], ws.env)          # mirror OFF: nothing is served
    assert r.returncode == 0, r.stderr


def _import_offline(ws: Workspace, pack: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(offline([sys.executable, "-c", IMPORT, str(pack)]), env=ws.env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, cwd="/")


def _refused(ws: Workspace, pack: Path) -> str:
    with pytest.raises(UserError) as err:
        import_pixi_pack(load(ws.env), pack)
    assert not ws.manifest.exists()
    assert not list(ws.cache_root.glob(".pixi-pack-import.*"))
    return str(err.value)


@needs_netns
@pytest.mark.parametrize("form", ["tar", "sh"])
def test_a_pack_is_imported_and_the_original_lock_installed_offline(workspace: Workspace, built_channel: Built,
                                                                      tmp_path: Path, form: str) -> None:
    _templated(workspace)
    lock = workspace.project / "pixi.lock"
    lock_before = lock.read_bytes()
    pack = _pack(built_channel, tmp_path / f"environment.{form}", executable=form == "sh")
    assert is_pixi_pack(pack)

    r = _import_offline(workspace, pack)
    assert r.returncode == 0, r.stderr
    assert "imported 4 artifacts" in r.stdout
    manifest = json.loads(workspace.manifest.read_text())
    assert manifest["lock_sha256"] == sha256_file(lock)
    assert all("pixi-pack" in (a["served_from"] or "") for a in manifest["artifacts"])

    install = run_cli(["install"], workspace.env, net=False)
    assert install.returncode == 0, install.stderr
    check = run_cli(["check"], workspace.env, net=False)
    assert check.returncode == 0, check.stderr

    assert lock.read_bytes() == lock_before                       # no re-lock
    locked = lockfile.read(lock, "default", "linux-64")
    installed = {}
    for rec in (workspace.prefix / "conda-meta").glob("*.json"):
        data = json.loads(rec.read_text())
        installed[data["name"]] = data["sha256"]
    assert installed == {a.name: a.sha256 for a in locked.conda}
    assert (workspace.prefix / "bin" / "hello").exists()

    again = _import_offline(workspace, pack)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr


@pytest.mark.parametrize("member", ["channel/linux-64/hello-1.0-0.tar.bz2", "pypi/demo_extras-0.3-py3-none-any.whl"])
def test_a_flipped_byte_is_refused_naming_the_member_and_both_hashes(workspace: Workspace, built_channel: Built,
                                                                      tmp_path: Path, member: str) -> None:
    _templated(workspace)
    locked = lockfile.read(workspace.project / "pixi.lock", "default", "linux-64")
    original = next(a.sha256 for a in locked.artifacts if a.filename == member.rsplit("/", 1)[1])
    assert original
    tampered = {}

    def edit(staged: Path) -> None:
        flip_byte(staged / member)
        tampered["sha"] = sha256_file(staged / member)

    text = _refused(workspace, _pack(built_channel, tmp_path / "environment.tar", edit=edit))
    assert member in text and original in text and tampered["sha"] in text, text
    assert not (workspace.cache_root / "conda" / "archives" / "linux-64" / "hello-1.0-0.tar.bz2").exists()
    assert not (workspace.cache_root / "pypi" / "wheels" / "demo_extras-0.3-py3-none-any.whl").exists()


def test_a_pack_for_another_platform_is_refused_naming_both(workspace: Workspace, built_channel: Built,
                                                             tmp_path: Path) -> None:
    _templated(workspace)
    text = _refused(workspace, _pack(built_channel, tmp_path / "environment.sh", executable=True,
                                     pack_platform="linux-aarch64"))
    assert "holds an environment for linux-aarch64, this install wants linux-64" in text, text


@pytest.mark.parametrize("how", ["file", "file, record and pin"])
def test_a_pack_missing_a_package_is_refused_naming_it(workspace: Workspace, built_channel: Built,
                                                       tmp_path: Path, how: str) -> None:
    _templated(workspace)

    def edit(staged: Path) -> None:
        (staged / "channel" / "linux-64" / "hello-1.0-0.tar.bz2").unlink()
        if how != "file":
            repodata = staged / "channel" / "linux-64" / "repodata.json"
            data = json.loads(repodata.read_text())
            del data["packages.conda"]["hello-1.0-0.tar.bz2"]
            repodata.write_text(json.dumps(data))
            env = staged / "environment.yml"
            env.write_text("".join(ln for ln in env.read_text().splitlines(True) if "hello=" not in ln))

    text = _refused(workspace, _pack(built_channel, tmp_path / "environment.tar", edit=edit))
    assert "lacks 1 of 4 artifacts" in text and "hello 1.0 0 (channel/linux-64/hello-1.0-0.tar.bz2" in text, text


def test_a_pack_of_another_environment_is_refused_naming_what_differs(workspace: Workspace, built_channel: Built,
                                                                      tmp_path: Path) -> None:
    _templated(workspace)

    def edit(staged: Path) -> None:
        env = staged / "environment.yml"
        env.write_text(env.read_text().replace("demo-data=2.0=0", "demo-data=2.1=0") + "  - extra-tool=1=0\n")

    text = _refused(workspace, _pack(built_channel, tmp_path / "environment.tar", edit=edit))
    assert "another environment" in text and "demo-data: the pack has 2.1 0, pixi.lock has 2.0 0" in text, text
    assert "extra-tool 1 0: only in the pack" in text, text


def _one_mib_hello(staged: Path) -> None:
    (staged / "channel" / "linux-64" / "hello-1.0-0.tar.bz2").write_bytes(bytes(range(256)) * 4096)


@pytest.mark.parametrize("damage", ["truncated tar", "not base64 near a header", "not base64 inside a member"])
def test_a_damaged_archive_is_refused(workspace: Workspace, built_channel: Built, tmp_path: Path,
                                      damage: str) -> None:
    """Cut short, or a character that is not base64 in the .sh: seen while scanning the headers, or
    (deep inside a 1 MiB member, far from any header) only while copying it."""
    _templated(workspace)
    sh, edit = "base64" in damage, _one_mib_hello if "inside" in damage else None
    pack = _pack(built_channel, tmp_path / ("environment.sh" if sh else "environment.tar"), executable=sh, edit=edit)
    with tarfile.open(_pack(built_channel, tmp_path / "plain.tar", edit=edit)) as tf:    # the same tar, unwrapped
        info = tf.getmember("channel/linux-64/hello-1.0-0.tar.bz2")
        middle = info.offset_data + info.size // 2
    data = pack.read_bytes()
    if sh:
        start = payload_start(data[:1 << 20])
        assert start is not None
        at = start + middle // 3 * 4
        pack.write_bytes(data[:at] + b"!" + data[at + 1:])
    else:
        pack.write_bytes(data[:middle])
    text = _refused(workspace, pack)
    assert "damaged or truncated" in text and "nothing was imported" in text, text
    if "inside" in damage:
        assert "the pack's channel/linux-64/hello-1.0-0.tar.bz2 cannot be read" in text, text


@pytest.mark.parametrize("extra", [
    member_info("../evil.txt", b"x"), member_info("/tmp/evil.txt", b"x"),
    member_info("channel/evil-link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
    member_info("channel/evil-hard", kind=tarfile.LNKTYPE, link="environment.yml"),
    member_info("channel/evil-dev", kind=tarfile.CHRTYPE)], ids=["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_an_unsafe_member_is_refused(workspace: Workspace, built_channel: Built, tmp_path: Path,
                                     extra: tuple[tarfile.TarInfo, bytes]) -> None:
    _templated(workspace)
    text = _refused(workspace, _pack(built_channel, tmp_path / "p" / "environment.tar", extra=[extra]))
    assert f"unsafe member {extra[0].name!r}" in text, text
    assert not (tmp_path / "evil.txt").exists() and not list(workspace.cache_root.rglob("evil*"))


def test_only_pixi_packs_are_recognised(built_channel: Built, tmp_path: Path) -> None:
    assert is_pixi_pack(_pack(built_channel, tmp_path / "a.tar"))
    assert is_pixi_pack(_pack(built_channel, tmp_path / "a.sh", executable=True))
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tf:
        tf.add(built_channel.template / "pixi.lock", arcname="pixi.lock")
    script = tmp_path / "other.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert not any(is_pixi_pack(p) for p in (other, script, text, tmp_path / "absent.tar"))


def test_the_base64_view_reads_any_range(tmp_path: Path) -> None:
    payload = os.urandom(100_003)
    path = tmp_path / "x.sh"
    path.write_bytes(b"#!/bin/sh\n@@END_HEADER@@\n\n" + base64.b64encode(payload) + b"\n@@END_ARCHIVE@@\nQUJD")
    start_at = payload_start(path.read_bytes()[:100])
    assert start_at == 26
    with open(path, "rb") as fh:
        view = io.BufferedReader(Base64View(fh, start_at), 4096)
        for start, size in [(0, 10), (1, 1), (2, 5000), (99_999, 100), (50_000, 1 << 20), (100_002, 9), (100_003, 5)]:
            view.seek(start)
            assert view.read(size) == payload[start:start + size], (start, size)


@pytest.mark.skipif(not (realworld("sglang-infer") / "pixi.lock").exists(), reason="shared/realworld not present")
@pytest.mark.parametrize("torch", ["2.9.1+cu128", "2.9.0+cu128"])
def test_the_real_sglang_lock_is_matched_pin_by_pin(tmp_path: Path, torch: str) -> None:
    """environment.yml written as pixi-pack writes it from infer-dev's real lock (49 conda + 162 PyPI):
    the same pins pass on to the artifact check (none are in this metadata-only pack: all named
    missing, the first few and a count); another torch is another environment."""
    template = tmp_path / "template"
    shutil.copytree(realworld("sglang-infer"), template)
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
                     "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_PLATFORM": "linux-64"})
    assert run_cli(["template"], env).returncode == 0
    locked = lockfile.read(template / "pixi.lock", "default", "linux-64")
    staged = tmp_path / "staged"
    staged.mkdir()
    yml = "channels:\n  - ./channel\n  - nodefaults\ndependencies:\n"
    yml += "".join(f"  - {r.name.normalized}={r.version}={r.build}\n" for r in locked.raw_records)
    yml += "  - pip:\n    - --no-index\n    - --find-links ./pypi\n"
    yml += "".join(f"    - {a.name}=={torch if a.name == 'torch' else a.version}\n" for a in locked.pypi)
    (staged / "environment.yml").write_text(yml)
    (staged / "pixi-pack.json").write_text(json.dumps({"version": "1", "platform": "linux-64"}, indent=2))
    pack = tmp_path / "environment.tar"
    with open(pack, "wb") as fh:
        write_tar(staged, fh)
    with pytest.raises(UserError) as err:
        import_pixi_pack(load(env), pack)
    text = str(err.value)
    if torch == "2.9.1+cu128":
        assert "lacks 211 of 211 artifacts" in text and "… and 203 more" in text, text
    else:
        assert "another environment" in text and "pypi:torch: the pack has 2.9.0+cu128, pixi.lock has 2.9.1+cu128" \
            in text, text


def test_an_import_cut_short_is_finished_by_the_next(workspace: Workspace, built_channel: Built,
                                                      tmp_path: Path) -> None:
    """Files in place but no manifest (killed before the end), a staging folder left behind: the next
    import keeps the verified files, removes the leftovers and writes the manifest."""
    _templated(workspace)
    pack = _pack(built_channel, tmp_path / "environment.tar")
    settings = load(workspace.env)
    assert import_pixi_pack(settings, pack).startswith("imported 4 artifacts")
    workspace.manifest.unlink()
    stale = workspace.cache_root / ".pixi-pack-import.killed" / "channel"
    stale.mkdir(parents=True)
    assert import_pixi_pack(settings, pack) == "imported 0 artifacts from environment.tar (4 already cached)"
    assert workspace.manifest.exists() and not stale.parent.exists()
