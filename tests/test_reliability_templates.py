"""Hostile templates: symlinks out of the template are never followed (refused for pixi.toml and
pixi.lock, skipped for anything else), special files never read, no traceback, nothing outside
copied into the project."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.reliability_tools import no_traceback, record, workspace_env

SECRET = b"OUTSIDE-THE-TEMPLATE-7f3a"


def _outside(t: Path) -> Path:
    out = t.parent / "outside"
    out.mkdir(exist_ok=True)
    (out / "secret.txt").write_bytes(SECRET)
    (out / "pixi.lock").write_bytes((t / "pixi.lock").read_bytes() + b"# " + SECRET + b"\n")
    return out


def _lock_out(t: Path) -> None:
    out = _outside(t)
    (t / "pixi.lock").unlink()
    (t / "pixi.lock").symlink_to(out / "pixi.lock")


def _toml_out(t: Path) -> None:
    out = _outside(t)
    shutil.copy(t / "pixi.toml", out / "pixi.toml")
    with open(out / "pixi.toml", "ab") as fh:
        fh.write(b"# " + SECRET + b"\n")
    (t / "pixi.toml").unlink()
    (t / "pixi.toml").symlink_to(out / "pixi.toml")


def _lock_relative_out(t: Path) -> None:
    _outside(t)
    (t / "pixi.lock").unlink()
    (t / "pixi.lock").symlink_to("../outside/pixi.lock")


def _file_out(t: Path) -> None:
    (t / "leak.txt").symlink_to(_outside(t) / "secret.txt")


def _dir_out(t: Path) -> None:
    (t / "configs").symlink_to(_outside(t), target_is_directory=True)


def _nested_out(t: Path) -> None:
    _outside(t)
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "b" / "up.txt").symlink_to("../../../outside/secret.txt")


def _etc(t: Path) -> None:
    (t / "passwd").symlink_to("/etc/passwd")
    (t / "root").symlink_to("/", target_is_directory=True)


def _loop(t: Path) -> None:
    (t / "loop-a").symlink_to("loop-b")
    (t / "loop-b").symlink_to("loop-a")


def _dangling(t: Path) -> None:
    (t / "gone.txt").symlink_to(t / "no-such-file")


def _fifo(t: Path) -> None:
    os.mkfifo(t / "pipe")                  # reading it would hang the copy
    (t / "zero").symlink_to("/dev/zero")   # reading it would never end


def _lock_fifo(t: Path) -> None:
    (t / "pixi.lock").unlink()
    os.mkfifo(t / "pixi.lock")


def _lock_to_dev_zero(t: Path) -> None:
    (t / "pixi.lock").unlink()
    (t / "pixi.lock").symlink_to("/dev/zero")


def _inside(t: Path) -> None:
    (t / "locks").mkdir()
    (t / "pixi.lock").rename(t / "locks" / "v1.lock")
    (t / "pixi.lock").symlink_to("locks/v1.lock")
    (t / "readme-link.txt").symlink_to("pixi.toml")


# name: (set-up, expected exit, text the output must hold)
CASES: dict[str, tuple[Callable[[Path], None], int, str]] = {
    "pixi.lock -> outside (absolute)": (_lock_out, 1, "pixi.lock in the template is a symlink pointing outside"),
    "pixi.lock -> outside (relative)": (_lock_relative_out, 1, "symlink pointing outside"),
    "pixi.toml -> outside": (_toml_out, 1, "pixi.toml in the template is a symlink pointing outside"),
    "pixi.lock is a FIFO": (_lock_fifo, 1, "the template has no pixi.lock"),
    "pixi.lock -> /dev/zero": (_lock_to_dev_zero, 1, "symlink pointing outside"),
    "extra file -> outside": (_file_out, 0, "not following symlink out of the template: leak.txt"),
    "folder -> outside": (_dir_out, 0, "not following symlink out of the template: configs"),
    "nested ../../.. link": (_nested_out, 0, "not following symlink out of the template: a/b/up.txt"),
    "links to /etc/passwd and /": (_etc, 0, "not following symlink out of the template: passwd"),
    "symlink loop": (_loop, 0, "template: copy"),
    "dangling symlink": (_dangling, 0, "template: copy"),
    "FIFO and /dev/zero link": (_fifo, 0, "template: copy"),
    "links inside the template": (_inside, 0, "template: copy"),
}


def _leaks(project: Path) -> list[str]:
    found = []
    for dirpath, dirs, files in os.walk(project):
        for name in files + dirs:
            p = Path(dirpath) / name
            if p.is_symlink():
                found.append(f"symlink in the project: {p} -> {os.readlink(p)}")
            elif p.is_file() and SECRET in p.read_bytes():
                found.append(f"outside content copied into {p}")
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_template(built_channel, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    setup, want, text = CASES[name]
    template = tmp_path / "tpl" / "template"
    shutil.copytree(built_channel.template, template)
    setup(template)
    env = workspace_env(tmp_path / "ws", template)
    r = run_cli(["template"], env, timeout=60)
    project = Path(env["AUTO_INFER_SGLANG_PROJECT_DIR"])
    problems = [] if r.returncode == want else [f"exit {r.returncode}, not {want}"]
    problems += [] if text in r.stderr else [f"output lacks {text!r}: {r.stderr[-400:]}"]
    problems += [] if no_traceback(r.stderr) else ["traceback"]
    problems += _leaks(project)
    if want == 1 and (project / "pixi.lock").exists():
        problems.append("a refused template was copied anyway")
    if want == 0 and name == "links inside the template":
        lock = (project / "pixi.lock").read_bytes()
        problems += [] if lock == (template / "locks" / "v1.lock").read_bytes() else ["inside link not copied"]
    _tally(name, problems)
    assert not problems, problems


_RESULTS: dict[str, list[str]] = {}


def _tally(name: str, problems: list[str]) -> None:
    _RESULTS[name] = problems
    bad = sorted(k for k, v in _RESULTS.items() if v)
    record("hostile-templates", test="test_reliability_templates.py",
           what="templates with symlinks out (pixi.lock/pixi.toml absolute and relative, extra files, folders, "
                "nested ../.., /etc/passwd, /), loops, dangling links, FIFOs, /dev/zero, links inside: `template` "
                "refuses (exit 1, names the file) or skips them with a line each; nothing from outside lands "
                "in the project, no symlink is copied, no hang, no traceback",
           tried=len(_RESULTS), ok=len(_RESULTS) - len(bad), failed=bad)
