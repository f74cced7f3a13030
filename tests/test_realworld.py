"""infer-dev's real SGLang cu128 project (lock v6, 49 conda + 162 PyPI) read unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from auto_infer.core.settings import load
from auto_infer.install import cache, lockfile
from auto_infer.install import manifest as manifests
from tests.helpers import clean_env, realworld, run_cli

REAL = realworld("sglang-infer")

pytestmark = pytest.mark.skipif(not (REAL / "pixi.lock").exists(), reason="shared/realworld not present")


def test_realworld_lock_parses_with_every_artifact() -> None:
    env = lockfile.read(REAL / "pixi.lock", "default", "linux-64")
    assert (env.version, len(env.conda), len(env.pypi)) == (6, 49, 162)
    names = {a.name for a in env.pypi}
    assert {"torch", "sglang", "sgl-kernel", "flashinfer-python"} <= names
    torch = next(a for a in env.pypi if a.name == "torch")
    assert torch.version == "2.9.1+cu128" and torch.filename.endswith(".whl")
    assert not lockfile.non_wheel(env)
    assert all(a.sha256 and a.size for a in env.conda)


def test_realworld_template_manifest_and_refusal(tmp_path: Path) -> None:
    template = tmp_path / "template"
    shutil.copytree(REAL, template)
    ws = tmp_path / "ws"
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(ws), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
                     "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_PLATFORM": "linux-64"})
    r = run_cli(["template"], env)
    assert r.returncode == 0, r.stderr
    s = load(env)
    locked = lockfile.read(s.project_dir / "pixi.lock", "default", "linux-64")
    manifest = manifests.build(s, locked, "rattler", "test", environ={})
    assert manifest["counts"] == {"conda": 49, "pypi": 162} and len(manifest["artifacts"]) == 211
    assert {a["kind"] for a in manifest["artifacts"]} == {"conda", "pypi"}
    json.dumps(manifest)
    assert len(cache.audit(s, locked, None, "rattler")) == 211      # empty cache: all missing
    r = run_cli(["install"], env)
    assert r.returncode == 1
    assert "211 artifacts needed" in r.stderr and "auto-infer warm" in r.stderr
    assert not s.env_prefix.exists()
    # with a manifest for this very lock but an empty cache, the count is exact and named
    manifests.write(s, manifest)
    r = run_cli(["install"], env)
    assert r.returncode == 1 and "211 of 211 artifacts are missing from the cache" in r.stderr
    assert "_openmp_mutex 4.5 (conda)" in r.stderr and "… and 203 more" in r.stderr
