"""auto-infer on a real GPU with a real engine: `transformers serve` on a tiny Llama, end to end.

    python tests/gpu/run_gpu_proof.py --host-python /opt/torch/.venv/bin/python3 \\
        --wheels WHEELS_DIR --out OUT_DIR [--device cuda|cpu] [--workdir DIR]

--host-python: the machine's interpreter that has torch + transformers (the environment exposes
its site-packages); --wheels: `transformers serve`'s serving wheels (fastapi, uvicorn, pydantic,
...) for that Python, which go into the lock and are installed offline by uv. Steps, each the real
CLI in its own process: build a local channel (a venv-style python that sees the host's torch,
plus those wheels) and a tiny Llama in a Hub cache → mirror up → warm → install (offline) →
check (offline) → serve (one instance per GPU, gpu_ids "0" and "1"; one on a one-GPU machine)
→ status → chat → nvidia-smi → stop → nvidia-smi. OUT_DIR gets proof.json (every check and
what it saw), proof.log, check.json, serve-report.md/.json, the model config and the server logs.
Exit 0 only when every check passes. `--device cpu` runs the same flow on a CPU (GPU checks
skipped), to test it before spending GPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import evidence

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.core.netns import can_unshare
from auto_infer.demo import channel, mirror
from auto_infer.demo.driver import run_step

HERE = Path(__file__).resolve().parent
MODEL = "auto-infer/tiny-llama"
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
CHECK_MODULES = "torch,transformers,fastapi,uvicorn"


def env_prefix(ws: Path) -> Path:
    """The environment `install` makes, with the default AUTO_INFER_SGLANG_PROJECT_DIR and env."""
    return ws / "sglang-infer" / ".pixi" / "envs" / "default"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host-python", required=True)
    p.add_argument("--wheels", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--workdir", type=Path)
    return p.parse_args()


def gpu_ids(device: str) -> list[str]:
    """One instance per GPU, two at most; on CPU two instances with the same (unused) ids."""
    if device == "cpu":
        return ["0", "1"]
    found = len(evidence.gpu_uuids())
    if found == 0:
        raise SystemExit("--device cuda, but nvidia-smi lists no GPU here (use --device cpu)")
    return ["0", "1"][:found]


def write_config(path: Path, python: Path, ids: list[str], device: str, hub: Path) -> None:
    command = [str(python), str(HERE / "engine_entry.py"), "serve", "--host", "{host}", "--port", "{port}",
               "--device", device, "--log-level", "info", "{served_model_name}"]
    env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": "", **NO_MULTICAST}        # PYTHONPATH: auto-infer's own, not the server's
    lines = ["# Two `transformers serve` instances, one GPU each (written by tests/gpu/run_gpu_proof.py).",
             "[master]", "enable = true", "", "[instance.control]", "ready_timeout = 300", "stop_grace = 20",
             'smoke_prompt = "Say hello in one short sentence."',
             f"command = {json.dumps(command)}", "", "[instance.control.env]",
             *(f"{k} = {json.dumps(v)}" for k, v in env.items()), "",
             "[instance.server]", 'host = "127.0.0.1"', f"served_model_name = {json.dumps(MODEL)}", ""]
    for gpu in ids:
        lines += [f"[instance.gpu{gpu}.control]", f'gpu_ids = "{gpu}"', f"[instance.gpu{gpu}.server]",
                  f"port = {free_port()}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def cli_env(ws: Path, template: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_")}
    env.update(NO_MULTICAST, AUTO_INFER_WORKSPACE_DIR=str(ws), AUTO_INFER_SGLANG_TEMPLATE_DIR=str(template),
               AUTO_INFER_SGLANG_CONFIG=str(config), AUTO_INFER_INSTALLER="rattler",
               AUTO_INFER_CHECK_MODULES=CHECK_MODULES, AUTO_INFER_LOCK_TIMEOUT="60",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def build(work: Path, host_python: str, wheels: Path, log: Path) -> tuple[channel.BuiltChannel, int, Path,
                                                                          channel.HostPython]:
    """The local channel + template, and the tiny Llama in a Hub cache (built by the host's python)."""
    import subprocess

    host = channel.host_python(host_python)
    port = free_port()
    real = sorted(wheels.glob("*.whl"))
    built = channel.build(work / "channel", f"http://127.0.0.1:{port}", [channel.python_spec(host, True)], [],
                          name="auto-infer-gpu-proof", real_wheels=real)
    hub = work / "hub"
    model = subprocess.run([host_python, str(HERE / "tiny_model.py"), str(hub), MODEL], capture_output=True,
                           text=True, env={**os.environ, **NO_MULTICAST, "PYTHONPATH": ""}, check=True)
    with open(log, "a") as fh:
        fh.write(f"host python {host_python}: {host}\nchannel: python {host.version} (site-packages of the host "
                 f"exposed) + {len(real)} wheels: {', '.join(w.name for w in real)}\n"
                 f"tiny model: {model.stdout.strip()}\n")
    return built, port, hub, host


def serve_and_probe(env: dict[str, str], log: Path, ws: Path, ids: list[str], gpu: bool) -> dict[str, Any]:
    """serve → status → chat → nvidia-smi, then stop (always) → nvidia-smi."""
    import subprocess

    seen: dict[str, Any] = {}
    try:
        run_step("serve (start, ready, chat, report)", ["serve"], env, log)
        status = run_step("status --json", ["status", "--json"], env, log).splitlines()
        start = next(i for i, line in enumerate(status) if line.startswith("["))   # after doit's own lines
        end = next(i for i, line in enumerate(status) if line.startswith("]"))
        seen["status"] = json.loads("\n".join(status[start:end + 1]))
        seen["chat"] = run_step("chat", ["chat"], env, log)
        seen["apps_running"], seen["uuids"] = evidence.compute_apps(), evidence.gpu_uuids()
        seen["smi_running"] = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout if gpu else ""
    finally:
        run_step("stop", ["stop"], env, log)
    deadline = time.monotonic() + 30            # the driver frees a dead process's memory shortly after
    seen["apps_after_stop"] = evidence.compute_apps()
    while gpu and seen["apps_after_stop"] and time.monotonic() < deadline:
        time.sleep(1)
        seen["apps_after_stop"] = evidence.compute_apps()
    seen["servers"] = {f"gpu{g}": evidence.server_line(ws / "logs" / "sglang" / f"gpu{g}" / "server.log")
                       for g in ids}
    return seen


def judge(
    ws: Path, seen: dict[str, Any], ids: list[str], gpu: bool, host_site: tuple[str, ...]
) -> list[evidence.Check]:
    check_data = json.loads((ws / ".auto-infer" / "check.json").read_text())
    report = json.loads((ws / "reports" / "serve-latest.json").read_text())
    rows = {r["name"]: r for r in seen.get("status", [])}
    checks = evidence.check_env(check_data, gpu, len(ids))
    for g in ids:
        checks += evidence.check_server(f"gpu{g}", g, rows.get(f"gpu{g}", {}), seen["servers"].get(f"gpu{g}"),
                                        seen.get("apps_running", []), seen.get("uuids", {}), gpu)
        checks += evidence.check_origin(f"gpu{g}", seen["servers"].get(f"gpu{g}"), env_prefix(ws), host_site)
    checks += evidence.check_report(report, [str(r.get("pid")) for r in rows.values()], gpu)
    checks.append(evidence.check_stopped(seen["apps_after_stop"], gpu))
    return checks


def collect(out: Path, ws: Path, config: Path, ids: list[str]) -> None:
    """At most 8 files in OUT (the device tool brings back 8)."""
    for src, name in ((ws / ".auto-infer" / "check.json", "check.json"), (config, "model-config.toml"),
                      (ws / "reports" / "serve-latest.md", "serve-report.md"),
                      (ws / "reports" / "serve-latest.json", "serve-report.json")):
        if src.is_file():
            shutil.copyfile(src, out / name)
    with open(out / "servers.log", "w") as fh:
        for g in ids:
            log = ws / "logs" / "sglang" / f"gpu{g}" / "server.log"
            fh.write(f"==> {log} <==\n{log.read_text(errors='replace') if log.is_file() else '(none)'}\n")


def main() -> int:
    args = parse()
    gpu = args.device == "cuda"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="auto-infer-gpu-proof-"))).resolve()
    ws, log, config = work / "ws", out / "proof.log", work / "model-config.toml"
    ids = gpu_ids(args.device)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    built, port, hub, host = build(work, args.host_python, args.wheels, log)
    env = cli_env(ws, built.project, config)
    write_config(config, env_prefix(ws) / "bin" / "python", ids, args.device, hub)
    netns = can_unshare()
    seen: dict[str, Any] = {}
    try:
        with mirror.Mirror(built.root, port):
            run_step("warm (online, local mirror)", ["warm"], env, log)
        shutil.rmtree(env_prefix(ws))       # warm installs too: make the offline install do it all again
        run_step("install (offline, from cache)", ["install"], env, log, offline=True, use_netns=netns)
        print(run_step("check (offline)", ["check"], env, log, offline=True, use_netns=netns))
        seen = serve_and_probe(env, log, ws, ids, gpu)
        checks = judge(ws, seen, ids, gpu, host.site_dirs)
    except UserError as exc:
        checks = [evidence.check("the pipeline ran", False, str(exc))]
    finally:
        collect(out, ws, config, ids)
    passed = all(c["result"] != "FAIL" for c in checks)
    proof = {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": args.device,
             "gpu_ids": ids, "offline_steps": "unshare -n" if netns else "dead proxies", "passed": passed,
             "checks": checks, "seen": seen}
    (out / "proof.json").write_text(json.dumps(proof, indent=2) + "\n")
    for c in checks:
        print(f"  [{c['result']:>7}] {c['check']}")
    print(f"GPU proof {'PASSED' if passed else 'FAILED'} ({args.device}, gpu_ids {ids}); evidence in {out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
