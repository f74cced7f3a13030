"""`auto-infer k8s`: what would stop a real cluster from serving (issue 23), checked semantically on
every rendered set: the shipped configs, infer-dev's real ones, and two-node variants.

The defect tests run the CLI as a user does (its stdout is the manifests); the checks are in
tests/k8s_checks.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from auto_infer.core import settings
from auto_infer.k8s import plan, render
from tests import k8s_checks as checks
from tests.helpers import clean_env, run_cli

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "model-configs"
INFER_DEV = REPO / "tests" / "data" / "infer-dev"
TWO_NODE = REPO / "tests" / "data" / "k8s" / "sglang-glm-4.7-2node.toml"
NNODES_2 = json.dumps({"instance": {"server": {"nnodes": 2}}})
RENDERED = {  # name → (config, overrides)
    **{p.stem: (p, "") for p in sorted(SHIPPED.glob("*.toml")) if p.stem != "transformers-serve-2gpu"},
    **{f"infer-dev/{p.stem}": (p, "") for p in sorted(INFER_DEV.glob("**/*.toml")) if "disabled" not in p.stem},
    "two-node/glm-4.7": (TWO_NODE, ""),
    "two-node/qwen2-vl-nnodes-only": (SHIPPED / "sglang-qwen2-vl-7b-tp2.toml", NNODES_2),
    "two-node/infer-dev-glm-nnodes-only": (INFER_DEV / "sglang-glm-4.7-tp8.toml", NNODES_2),
    "two-node/infer-dev-vllm-tp8-ray": (INFER_DEV / "vllm-qwen2-vl-7b-tp8.toml", NNODES_2),
}


def rendered(path: Path, tmp: Path, overrides: str = "", **opts: Any) -> dict[str, str]:
    s = settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp), "AUTO_INFER_SGLANG_CONFIG": str(path),
                       "AUTO_INFER_SGLANG_OVERRIDES": overrides})
    return render.render(*render.load(s), plan.Options(**opts))


def cli(tmp: Path, config: Path | str, *args: str, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    """`auto-infer k8s ARGS` as a user runs it: exit code, the documents on stdout, stderr."""
    (tmp / "ws").mkdir(exist_ok=True)
    if not isinstance(config, Path):
        (tmp / "cfg.toml").write_text(config)
        config = tmp / "cfg.toml"
    r = run_cli(["k8s", *args], clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp / "ws"),
                                           "AUTO_INFER_SGLANG_CONFIG": str(config), **env}))
    return r.returncode, (checks.docs({"out": r.stdout}) if r.returncode == 0 else []), r.stderr


def kind(all_docs: list[dict[str, Any]], k: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in all_docs if d["kind"] == k and (name is None or d["metadata"]["name"] == name))


@pytest.mark.parametrize("case", sorted(RENDERED))
def test_every_rendered_set_would_serve(case: str, tmp_path: Path) -> None:
    path, overrides = RENDERED[case]
    files = rendered(path, tmp_path, overrides)
    assert checks.all_findings(files, tmp_path) == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    files = rendered(TWO_NODE, tmp_path)
    broken = {
        k: v.replace(
            '"auto-infer.io/role": "leader"',
            '"role": "leader"' if k.startswith("31-") else '"auto-infer.io/role": "leader"',
        )
        .replace('["auto-infer", "supervise"]', '["smg", "launch"]')
        .replace("$(LWS_LEADER_ADDRESS)", "$(LWS_LEADER)")
        .replace("containerPort: 30000", "containerPort: 30001")
        for k, v in files.items()
    }
    found = "\n".join(checks.all_findings(broken, tmp_path))
    assert "selects no pod" in found and "runs smg" in found and "$(LWS_LEADER), undefined" in found
    assert "listens on 0.0.0.0:30000, probes ask port 30001" in found and "is not the LWS leader" in found
    ranks = {k: v.replace('"node_rank\\":$(LWS_WORKER_INDEX)', '"node_rank\\":0') for k, v in files.items()}
    assert "node_rank 0 / nnodes 2, but LWS index 1" in "\n".join(checks.all_findings(ranks, tmp_path))


# ---- engines and what cannot be deployed -----------------------------------------------------------

def test_llama_cpp_renders_with_its_routes_and_gpus(tmp_path: Path) -> None:
    files = rendered(SHIPPED / "llamacpp-glm-4.7-q2k.toml", tmp_path)
    c = kind(checks.docs(files), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["name"] == "llamacpp" and c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 8 and c["ports"][0]["containerPort"] == 8080


@pytest.mark.parametrize("config, overrides, said", [
    (SHIPPED / "llamacpp-glm-4.7-q2k.toml", NNODES_2, "llama.cpp with nnodes = 2 cannot be deployed: llama-server"),
    (SHIPPED / "transformers-serve-2gpu.toml", "", "runs its own command"),
    (INFER_DEV / "llama_config.disabled.toml", "", "[master] enable = false: no server would run")])
def test_what_cannot_deploy_is_refused_naming_the_engine_and_why(tmp_path: Path, config: Path, overrides: str,
                                                                said: str) -> None:
    rc, _, err = cli(tmp_path, config, AUTO_INFER_SGLANG_OVERRIDES=overrides)
    assert rc == 1 and said in err and "Traceback" not in err, err
    assert "control.command" not in err or "transformers" in config.name


def test_vllm_over_two_nodes_runs_a_ray_cluster_as_vllm_s_lws_example(tmp_path: Path) -> None:
    files = rendered(INFER_DEV / "vllm-qwen2-vl-7b-tp8.toml", tmp_path, NNODES_2)
    all_docs = checks.docs(files)
    lws = kind(all_docs, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    leader, worker = (lws[t]["spec"]["containers"][0] for t in ("leaderTemplate", "workerTemplate"))
    assert lws["size"] == 2 and leader["resources"] == worker["resources"] == {"limits": {"nvidia.com/gpu": 4}}
    assert '"$env/bin/ray" start --head --port=6379' in leader["command"][2] and "ports" in leader
    assert "ray\" start --address=\"$2:6379\" --block" in worker["command"][2] and "ports" not in worker
    assert checks.all_findings(files, tmp_path) == []
    broken = {k: v.replace('--head', '--headless') if k.startswith("30-lws") else v for k, v in files.items()}
    broken = {k: v.replace('$(LWS_LEADER_ADDRESS)"]', '$(LWS_LEADER)"]') for k, v in broken.items()}
    found = "\n".join(checks.all_findings(broken, tmp_path))
    assert "worker does not join the leader" in found and "$(LWS_LEADER), undefined" in found


def test_pod_files_never_carry_other_instances(tmp_path: Path) -> None:
    """21.9: a pod's config and env hold its own instance only (not every other one's overrides)."""
    lines = ['[master]\nenable = true\n[instance.server]\nport = 30000\nhost = "0.0.0.0"\n']
    lines += [f'[instance.m{i}.server]\nmodel_path = "/llm-models/m{i}"\n' for i in range(40)]
    path = tmp_path / "many.toml"
    path.write_text("".join(lines))
    files = rendered(path, tmp_path)
    one = files["30-deployment-m7.yaml"] + files["30-configmap-m7.yaml"]
    assert "m8" not in one and "m39" not in one and "m7" in one


def test_fifo_named_like_a_manifest_never_blocks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "x.yaml")
    rc, _, err = cli(tmp_path, TWO_NODE, "--out", str(out))          # run_cli's timeout: a hang fails
    assert rc == 1 and "x.yaml is a FIFO" in err and "Traceback" not in err, err
    assert stat.S_ISFIFO((out / "x.yaml").lstat().st_mode) and sorted(p.name for p in out.iterdir()) == ["x.yaml"]


def test_output_grows_linearly_with_instances(tmp_path: Path) -> None:
    """21.9: each added instance adds the same bytes, from 20 to 200 (the bench times it up to 10,000)."""
    from bench.k8s_growth import config_text

    sizes = {}
    for n in (20, 100, 200):
        path = tmp_path / f"c{n}.toml"
        path.write_text(config_text(n))
        sizes[n] = sum(len(t) for t in rendered(path, tmp_path).values())
    first, second = (sizes[100] - sizes[20]) / 80, (sizes[200] - sizes[100]) / 100
    assert abs(first - second) < 0.001 * first, sizes       # quadratic: the second step would cost more


ROUTED = {
    "two-node/glm-4.7": (TWO_NODE, ""),  # example.toml's [router] (extra_args, instances), enabled:
    "example-router-on": (
        SHIPPED / "example.toml",
        json.dumps({"router": {"enable": True, "instances": ["qwen2_vl_7b"]}}),
    ),
}


@pytest.mark.parametrize("case", sorted(ROUTED))
def test_gateway_flags_parse_with_sglang_router_s_own_parser(case: str, tmp_path: Path) -> None:
    """The gateway's flags (after the program) go through sglang_router.launch_router's parser."""
    import subprocess
    import sys

    from auto_infer.serve import gateway as serve_gateway

    path, overrides = ROUTED[case]
    gws = [d for d in checks.docs(rendered(path, tmp_path, overrides)) if d["metadata"]["name"] == "auto-infer-gateway"
           and d["kind"] == "Deployment"]
    for gw in gws:
        argv = gw["spec"]["template"]["spec"]["containers"][0]["command"]
        flags = argv[argv.index("--host"):]
        r = subprocess.run([sys.executable, "-c", serve_gateway.CHECK_SCRIPT, json.dumps(flags)], capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(serve_gateway.MARK))
        assert "error" not in line and "missing" not in line, line
    assert len(gws) == 1
