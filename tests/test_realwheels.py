"""The real SGLang wheels through the whole pipeline, on the CPU (issue 15 A).

A pixi.lock whose PyPI part is the real sglang 0.5.23 + torch 2.14.1 wheels and the packages the
import needs (47 files, 2.7 GB, tests/data/realwheels.txt: real PyPI paths and sha256, host
rewritten to a 127.0.0.1 mirror) and whose conda part is a Python from a local channel:
`warm` through the mirror; the mirror stopped; `install` into a new workspace inside
`unshare -n`; `check` imports torch and sglang there; then SGLang's own parser, in the installed
environment's Python, accepts every shipped model config and the real GLM config.

Needs the wheel folder built by `.ci/setup-realwheels.sh` (AUTO_INFER_REALWHEELS_DIR).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from auto_infer.core import settings
from auto_infer.demo import mirror
from auto_infer.serve import config
from auto_infer.serve.engines import base as argv_rules
from auto_infer.serve.engines import preflight
from auto_infer.serve.engines import sglang as sglang_engine
from bench import realwheels
from tests.conftest import needs_netns
from tests.helpers import clean_env, run_cli
from tests.helpers.configs import EXAMPLES, REALWORLD

REPO = Path(__file__).resolve().parents[1]

DIR = os.environ.get(realwheels.DIR_VAR, "")      # read at import: the autouse fixture clears AUTO_INFER_*
WHY = (f"set {realwheels.DIR_VAR} (filled by .ci/setup-realwheels.sh)" if not DIR
       else realwheels.unavailable(Path(DIR)))

pytestmark = [pytest.mark.realwheels, pytest.mark.skipif(WHY is not None, reason=WHY or "")]


def workspace_env(ws: Path, template: Path, cache_root: Path) -> dict[str, str]:
    return clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(ws),
        "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_PROJECT_DIR": str(ws / "sglang-infer"),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(cache_root),
        "AUTO_INFER_INSTALLER": "rattler",
        "AUTO_INFER_CHECK_MODULES": "torch,sglang",
        "HOME": str(ws / "home"),
    })


def model_configs(s: settings.Settings) -> dict[str, dict[str, object]]:
    files = [*EXAMPLES, *([REALWORLD] if REALWORLD.exists() else [])]
    # an instance with a model table gets its model_path from serve (the checked snapshot): stand one in
    return {
        f"{path}:{inst.name}": {**inst.server, **({"model_path": "/weights/of/the/model/table"} if inst.model else {})}
        for path in files
        for inst in config.load(s, path).instances
        if inst.engine == "sglang"
    }


@needs_netns
def test_real_wheels_warm_install_offline_check_and_sglang_preflight(tmp_path: Path) -> None:
    built = realwheels.build(tmp_path / "mirror", Path(DIR))
    cache_root = tmp_path / "cache"
    online_env = workspace_env(tmp_path / "online", built.template, cache_root)
    with mirror.Mirror(built.root, built.port) as m:
        r = run_cli(["warm"], online_env, timeout=1200)
        assert r.returncode == 0, r.stderr[-4000:]
        fetched = {p for p in m.requests if p.startswith("/packages/")}
    assert fetched == {p.path for p in built.wheels}            # every wheel came through the mirror, by its real path
    wheels = cache_root / "pypi" / "wheels"
    assert sorted(p.name for p in wheels.iterdir() if p.suffix == ".whl") == sorted(p.filename for p in built.wheels)

    # The mirror is gone; a new workspace on the same cache, no network at all.
    offline_env = workspace_env(tmp_path / "offline", built.template, cache_root)
    r = run_cli(["install"], offline_env, net=False, timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]
    r = run_cli(["check"], offline_env, net=False, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    s = settings.load(offline_env)
    checked = json.loads((s.state_dir / "check.json").read_text())
    assert checked["missing"] == {}
    assert checked["modules"]["torch"].split("+")[0] == realwheels.TORCH_VERSION
    assert checked["modules"]["sglang"] == realwheels.SGLANG_VERSION
    assert checked["cuda_available"] is False
    assert checked["environment"] == str(s.env_prefix)

    # SGLang's own parser, in the installed environment's Python (no side venv), judges every config.
    python = s.env_prefix / "bin" / "python"
    servers = model_configs(s)
    sglang_files = [p for p in EXAMPLES if p.name.startswith("sglang-") or p.name == "example.toml"]
    assert len(servers) >= 6 and all(any(k.startswith(f"{p}:") for k in servers) for p in sglang_files)
    result = preflight.check("SGLang", sglang_engine.SCRIPT, python, clean_env({"HOME": str(tmp_path / "home")}),
                               lambda multi: {n: argv_rules.server_flags(v, multi) for n, v in servers.items()})
    assert result.skipped is None, result.skipped
    assert result.version == realwheels.SGLANG_VERSION
    assert result.rejected == {}, result.rejected
    assert "--lora-paths" in result.multi

    # `serve --dry-run` with that environment: SGLang's parser accepts each config, the argv is shown;
    # nothing starts (the model folders of the shipped configs are not on this host: exit 1, said per instance)
    for path in sorted((REPO / "model-configs").glob("sglang-*.toml")):
        r = run_cli(["serve", "--dry-run"], dict(offline_env, AUTO_INFER_SGLANG_CONFIG=str(path)), net=False)
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr
        assert f"flags accepted by SGLang {realwheels.SGLANG_VERSION}'s own parser" in r.stderr, r.stderr
        assert f"argv: {python} -m sglang.launch_server" in r.stdout, r.stdout
