"""The template copy: when it copies, when it keeps a user's edit, when it refuses."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Workspace
from tests.helpers import run_cli


def template(ws: Workspace, **env: str):  # type: ignore[no-untyped-def]
    return run_cli(["template"], dict(ws.env, **env))


def test_copies_then_skips_then_recopies_on_template_change(workspace: Workspace) -> None:
    r = template(workspace)
    assert r.returncode == 0 and "the project copy is missing" in r.stderr
    assert (workspace.project / "pixi.lock").read_bytes() == (workspace.template / "pixi.lock").read_bytes()
    r = template(workspace)
    assert "-- template (up to date" in r.stderr
    with open(workspace.template / "pixi.toml", "a") as fh:
        fh.write("\n# template v2\n")
    r = template(workspace)
    assert r.returncode == 0 and "the template changed: pixi.toml" in r.stderr
    assert (workspace.project / "pixi.toml").read_text().endswith("# template v2\n")


def test_never_copies_pixi_dir_caches_or_symlinks_out(workspace: Workspace, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("do not copy me")
    (workspace.template / "leak.txt").symlink_to(secret)
    (workspace.template / ".pixi" / "envs").mkdir(parents=True)
    (workspace.template / ".pixi" / "envs" / "junk").write_text("x")
    (workspace.template / "scripts").mkdir()
    (workspace.template / "scripts" / "smoke.sh").write_text("echo smoke\n")
    r = template(workspace)
    assert r.returncode == 0, r.stderr
    assert "not following symlink out of the template: leak.txt" in r.stderr
    assert not (workspace.project / "leak.txt").exists()
    assert not (workspace.project / ".pixi" / "envs" / "junk").exists()
    assert (workspace.project / "scripts" / "smoke.sh").read_text() == "echo smoke\n"


def test_lock_symlinked_out_of_the_template_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.lock"
    (workspace.template / "pixi.lock").rename(real)
    (workspace.template / "pixi.lock").symlink_to(real)
    r = template(workspace)
    assert r.returncode == 1 and "symlink pointing outside" in r.stderr


def test_user_edit_is_kept_and_a_conflict_is_refused(workspace: Workspace) -> None:
    assert template(workspace).returncode == 0
    toml = workspace.project / "pixi.toml"
    toml.write_text(toml.read_text() + "\n# my local pin\n")
    r = template(workspace)
    assert r.returncode == 0 and "keeping your edits" in r.stderr
    assert toml.read_text().endswith("# my local pin\n")
    with open(workspace.template / "pixi.toml", "a") as fh:
        fh.write("\n# template v2\n")
    r = template(workspace)
    assert r.returncode == 1
    assert "the template changed (pixi.toml) and the project copy was edited (pixi.toml)" in r.stderr
    assert "AUTO_INFER_SGLANG_FORCE_RECOPY=1" in r.stderr
    assert toml.read_text().endswith("# my local pin\n")            # nothing overwritten
    r = template(workspace, AUTO_INFER_SGLANG_FORCE_RECOPY="1")
    assert r.returncode == 0
    assert toml.read_text().endswith("# template v2\n")
    backups = list((workspace.project / ".pixi" / "auto-infer").glob("backup-*/pixi.toml"))
    assert backups and backups[0].read_text().endswith("# my local pin\n")   # the edit is not lost


def test_runs_from_any_folder_and_ignores_doit_config_there(workspace: Workspace, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pyproject.toml").write_text('[tool.doit]\nreporter = "json"\n')
    (elsewhere / "doit.cfg").write_text("[GLOBAL]\nreporter = json\n")
    r = run_cli(["template"], workspace.env, cwd=elsewhere)
    assert r.returncode == 0 and "template: copy" in r.stderr and not r.stdout.lstrip().startswith("{")
    assert not (elsewhere / ".doit.db").exists()
    assert (workspace.root / ".auto-infer" / "doit.sqlite").is_file()


def test_help_and_doit_list_show_the_tasks(workspace: Workspace) -> None:
    r = run_cli(["--help"], workspace.env)
    assert r.returncode == 0
    for name in ("template", "warm", "install", "check", "serve", "boot", "env"):
        assert f"\n  {name} " in r.stdout
    repo = Path(__file__).resolve().parents[1]
    import subprocess
    import sys
    lst = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=repo, env=workspace.env,
                         capture_output=True, text=True)
    assert lst.returncode == 0, lst.stderr
    assert "install" in lst.stdout and "Offline-capable" in lst.stdout
    assert not os.path.exists(workspace.root / ".auto-infer")      # listing writes no state (issue 19)
