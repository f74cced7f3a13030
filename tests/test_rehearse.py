"""rehearse (issue 12): while online, prove the cache alone installs the lock: a scratch project,
sharing only the cache, installed + checked inside a network namespace with no egress, then removed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Workspace, needs_netns
from tests.helpers import run_cli


def _scratch_left(ws: Workspace) -> list[Path]:
    return list((ws.root / ".auto-infer").glob("rehearse-*"))


@needs_netns
def test_rehearse_installs_a_scratch_copy_offline_and_removes_it(workspace: Workspace, online: object) -> None:
    r = run_cli(["warm", "--rehearse"], workspace.env)
    assert r.returncode == 0, r.stderr
    assert "rehearsal passed" in r.stderr and "3 conda + 1 PyPI packages" in r.stderr, r.stderr
    assert "demo_extras 0.3" in r.stderr                      # the import check ran in the scratch env
    assert _scratch_left(workspace) == []
    # the user's own environment is the one warm made: the rehearsal did not touch it
    record = json.loads((workspace.prefix / "conda-meta" / "auto-infer-install").read_text())
    assert record["lock_sha256"]


@needs_netns
def test_rehearse_fails_when_the_offline_environment_would_not_import(workspace: Workspace, online: object) -> None:
    """warm is fine, but the environment lacks a module the check requires: the rehearsal says so now,
    online, instead of the air-gapped machine finding out later."""
    assert run_cli(["warm"], workspace.env).returncode == 0
    env = dict(workspace.env, AUTO_INFER_CHECK_MODULES="demo_extras,not_in_the_lock")
    r = run_cli(["rehearse"], env)
    assert r.returncode == 1, r.stderr
    assert "not_in_the_lock" in r.stderr and "rehearse" in r.stderr and "Traceback" not in r.stderr
    assert _scratch_left(workspace) == []


def test_rehearse_before_warm_says_what_to_run(workspace: Workspace) -> None:
    r = run_cli(["rehearse"], workspace.env)           # warm runs first (task_dep) and needs the mirror
    assert r.returncode == 1 and "Traceback" not in r.stderr
