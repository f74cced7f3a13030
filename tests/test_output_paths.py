"""Every file a command writes to a path the user gives replaces a regular file or nothing: never a
device, a symlink, a FIFO, a socket or a folder (exit 1, one message, the thing left as it was);
``-`` is stdout where a file is written (bundle export -)."""

from __future__ import annotations

import os
import socket
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text, open_append
from auto_infer.demo import mirror
from tests.conftest import Built
from tests.helpers import clean_env, run_cli

ROOT = os.geteuid() == 0


def _symlink(p: Path) -> Path:
    target = p.with_name("precious.txt")
    target.write_text("keep me\n")
    p.symlink_to(target)
    return target


def _dangling(p: Path) -> Path:
    p.symlink_to(p.with_name("nowhere"))
    return p


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    (p / "inside").write_text("x")
    return p


def _device(p: Path) -> Path:
    if not ROOT:
        pytest.skip("mknod needs root")
    os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))        # a /dev/null of our own
    return p


def _socket(p: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()
    return p


THINGS: dict[str, Callable[[Path], Path]] = {"symlink": _symlink, "dangling symlink": _dangling, "FIFO": _fifo,
                                              "folder": _folder, "device": _device, "socket": _socket}


def _state(p: Path) -> tuple[int, int, str]:
    st = os.lstat(p)
    return st.st_mode, st.st_ino, os.readlink(p) if p.is_symlink() else ""


@pytest.mark.parametrize("kind", sorted(THINGS))
def test_atomic_writes_never_replace_what_is_not_a_regular_file(kind: str, tmp_path: Path) -> None:
    p = tmp_path / "out.json"
    THINGS[kind](p)
    before = _state(p)
    with pytest.raises(UserError) as exc:
        atomic_write_text(p, "new\n")
    assert str(p) in str(exc.value) and "regular file" in str(exc.value)
    assert _state(p) == before
    assert not list(tmp_path.glob(".out.json.*"))                  # no temp file left beside it
    if kind == "symlink":
        assert (tmp_path / "precious.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("kind", ["symlink", "FIFO", "folder", "socket"])
def test_a_log_opened_to_append_never_follows_a_link_or_blocks_on_a_fifo(kind: str, tmp_path: Path) -> None:
    p = tmp_path / "server.log"
    THINGS[kind](p)
    with pytest.raises(UserError):
        open_append(p)                                              # a FIFO would block here before
    if kind == "symlink":
        assert (tmp_path / "precious.txt").read_text() == "keep me\n"


def test_a_file_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        atomic_write_text(tmp_path / "f" / "a" / "b.json", "{}")


def test_regular_files_and_new_paths_are_written(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old")
    atomic_write_text(tmp_path / "old.txt", "new")
    atomic_write_text(tmp_path / "sub" / "new.txt", "x")
    assert (tmp_path / "old.txt").read_text() == "new" and (tmp_path / "sub" / "new.txt").read_text() == "x"
    with open_append(tmp_path / "sub" / "log") as fh:
        fh.write(b"a\n")
    assert (tmp_path / "sub" / "log").read_bytes() == b"a\n"


def _env(tmp: Path, template: Path) -> dict[str, str]:
    return clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp / "ws"), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
                      "AUTO_INFER_SGLANG_CACHE_ROOT": str(tmp / "ws" / "cache"), "AUTO_INFER_INSTALLER": "rattler",
                      "HOME": str(tmp / "home")})


@pytest.mark.parametrize("kind", sorted(THINGS))
def test_bundle_export_refuses_to_write_over_what_is_not_a_file(
    kind: str, built_channel: Built, tmp_path: Path
) -> None:
    out = tmp_path / "x.bundle.tar"
    THINGS[kind](out)
    before = _state(out)
    r = run_cli(["bundle", "export", str(out)], _env(tmp_path, built_channel.template), timeout=120)
    assert r.returncode == 1 and str(out) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _state(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.bundle.tar")]


def test_bundle_export_dash_writes_the_bundle_to_stdout(built_channel: Built, tmp_path: Path) -> None:
    import subprocess

    from tests.helpers import CLI
    env = _env(tmp_path, built_channel.template)
    out = tmp_path / "piped.tar"
    with mirror.Mirror(built_channel.channel.root, built_channel.port), open(out, "wb") as fh:
        r = subprocess.run([*CLI, "bundle", "export", "-"], env=env, stdout=fh, stderr=subprocess.PIPE, text=True,
                           cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "-").exists()                            # no file named '-'
    with tarfile.open(out) as tf:                                   # stdout held the bundle, and only it
        names = tf.getnames()
    assert names[0] == "auto-infer-bundle.json" and "cache-manifest.json" in names
    assert "→ stdout" in r.stderr


@pytest.mark.parametrize("kind", ["symlink", "FIFO", "folder", "device"])
def test_a_log_file_that_is_not_a_file_is_refused_before_anything_starts(kind: str, tmp_path: Path) -> None:
    import sys
    log = tmp_path / "srv.log"
    THINGS[kind](log)
    before = _state(log)
    config = tmp_path / "models.toml"
    config.write_text(f"""[instance.one.control]
command = ["{sys.executable}", "-m", "auto_infer.demo.responder", "--port", "{{port}}"]
log_file = "{log}"
[instance.one.server]
port = 18123
""")
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(config),
                     "HOME": str(tmp_path / "home")})
    for args in (["serve", "--dry-run"], ["serve", "--dry-run", "--json"]):
        r = run_cli(args, env, timeout=60)
        assert r.returncode == 1 and str(log) in r.stderr and "log_file" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert _state(log) == before


@pytest.mark.parametrize("kind", ["file", "FIFO", "symlink to a file", "dangling symlink", "device", "socket"])
@pytest.mark.parametrize("how", ["demo --workspace", "AUTO_INFER_WORKSPACE_DIR"])
def test_a_workspace_that_is_not_a_folder_is_refused_and_left_alone(kind: str, how: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    if kind == "file":
        ws.write_text("mine\n")
    elif kind == "symlink to a file":
        _symlink(ws)
    else:
        THINGS[kind](ws)
    before = _state(ws)
    env = clean_env({"HOME": str(tmp_path / "home"), "AUTO_INFER_SGLANG_CONFIG": str(tmp_path / "none.toml")})
    if how == "demo --workspace":
        r = run_cli(["demo", "--workspace", str(ws)], env, timeout=60)
    else:
        r = run_cli(["template"], {**env, "AUTO_INFER_WORKSPACE_DIR": str(ws)}, timeout=60)
    assert r.returncode == 1 and str(ws) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "free space" not in r.stderr                    # not a full disk: a workspace that is no folder
    assert _state(ws) == before
    assert not (tmp_path / "nowhere").exists()             # a dangling link is not followed to create a folder
