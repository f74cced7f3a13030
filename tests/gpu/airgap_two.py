"""The two-GPU part of the air-gap proof (issue 20), run by airgap_run.py when two GPUs are there.

One model config, the same imported weights: ``gpu0`` (gpu_ids "0") and ``gpu1`` (gpu_ids "1"),
``both`` over "0,1" (llama.cpp splits its layers across the two), and the gateway (``[router]``,
sglang-router's, started by the same Python that runs auto-infer) in front of gpu0 and gpu1.
Checked: all ready; each single-GPU server's pid on its own GPU's uuid only and ``both`` on the two;
each server's own log names its CUDA devices; requests sent to the gateway reach both workers
(their /metrics counters grow); stopping gpu0 leaves gpu1 answering; after stop nothing is left.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import airgap_config as cfg
import airgap_probe as probe
import evidence

from auto_infer.core.net import free_port

if TYPE_CHECKING:
    from airgap_run import Run


def run(r: Run, binary: str) -> None:
    ports = [free_port() for _ in range(3)]
    router = {"host": "127.0.0.1", "port": free_port(), "prometheus_port": free_port(), "policy": "round_robin",
              "instances": ["gpu0", "gpu1"], "command": [sys.executable, "-m", "sglang_router.launch_router"]}
    config = cfg.write(r.work / "model-config-2gpu.toml", binary, cfg.two_gpus(ports), router)
    env = dict(r.env, AUTO_INFER_SGLANG_CONFIG=str(config))
    seen: dict[str, Any] = {"config": config.read_text()}
    r.seen["two_gpus"] = seen
    uuids = evidence.gpu_uuids()
    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(("gpu0", "gpu1", "both"), ports, strict=True)}
    try:
        seen["serve"] = r.timed("two GPUs: serve", r.steps.run, "two GPUs: serve", ["serve"], env)
        seen["report_md"] = (r.work / "ws" / "reports" / "serve-latest.md").read_text()
        rows = probe.rows(env)
        seen["status"] = {n: {k: rows[n].get(k) for k in ("state", "pid", "port", "gpus", "log")} for n in rows}
        seen["apps_running"] = apps = evidence.compute_apps()
        seen["nvidia_smi_running"] = probe.smi_text() if r.gpu else ""
        seen["gateway"] = gateway(urls, router["port"])       # type: ignore[arg-type]
        r.steps.run("two GPUs: stop gpu0", ["stop", "gpu0"], env)
        seen["gpu1_after_stop_gpu0"] = probe.generate(urls["gpu1"], "gpu1", 16)
        seen["apps_after_stop_gpu0"] = evidence.compute_apps()
    finally:
        r.steps.run("two GPUs: stop", ["stop"], env)
    seen["apps_after_stop"] = probe.wait_apps_gone(r.gpu)
    judge(r, seen, rows, apps, uuids)


def gateway(urls: dict[str, str], port: int, requests_n: int = 6) -> dict[str, Any]:
    before = {n: probe.metrics_count(urls[n]) for n in ("gpu0", "gpu1")}
    answers = [probe.generate(f"http://127.0.0.1:{port}", "gpu0", 8)["status"] for _ in range(requests_n)]
    after = {n: probe.metrics_count(urls[n]) for n in ("gpu0", "gpu1")}
    return {"answers": answers, "tokens_predicted_before": before, "tokens_predicted_after": after}


def judge(r: Run, seen: dict[str, Any], rows: dict[str, dict[str, Any]], apps: list[dict[str, str]],
          uuids: dict[str, str]) -> None:
    st = seen["status"]
    r.check("two GPUs: gpu0, gpu1, both and the gateway ready", all(
        st.get(n, {}).get("state") == "ready" for n in ("gpu0", "gpu1", "both", "router")),
        {n: v.get("state") for n, v in st.items()})
    for name, ids in (("gpu0", ["0"]), ("gpu1", ["1"]), ("both", ["0", "1"])):
        pid, want = st.get(name, {}).get("pid"), sorted(str(uuids.get(i)) for i in ids)
        r.check(f"two GPUs: nvidia-smi shows {name}'s pid on GPU {' and '.join(ids)} only",
                probe.pids_on(pid, apps) == want, {"pid": pid, "on": probe.pids_on(pid, apps), "want": want},
                gpu_only=True)
        log = Path(st.get(name, {}).get("log") or "/nonexistent")
        lines = probe.log_lines(log)
        seen.setdefault("server_logs", {})[name] = lines
        devices = ["CUDA0", "CUDA1"] if name == "both" else ["CUDA0"]
        r.check(f"two GPUs: {name}'s log: every layer offloaded, buffers on {devices} only",
                probe.layers_on_gpu(lines)["all_offloaded"]
                and all(probe.layers_on_gpu(lines, d)["buffer"] for d in devices)
                and (name == "both" or not probe.layers_on_gpu(lines, "CUDA1")["buffer"]),
                lines[:12], gpu_only=True)
    gw = seen["gateway"]
    grew = {n: gw["tokens_predicted_after"][n] > gw["tokens_predicted_before"][n] for n in ("gpu0", "gpu1")}
    r.check("two GPUs: every request through the gateway answered 200", all(a == 200 for a in gw["answers"]),
            gw["answers"])
    r.check("two GPUs: the gateway's requests reached both workers", all(grew.values()), gw)
    after = seen["gpu1_after_stop_gpu0"]
    r.check("two GPUs: gpu1 answers after gpu0 is stopped", after["status"] == 200 and bool(after["text"]), after)
    r.check("two GPUs: gpu0's pid gone from nvidia-smi after its stop",
            probe.pids_on(st.get("gpu0", {}).get("pid"), seen["apps_after_stop_gpu0"]) == [],
            seen["apps_after_stop_gpu0"], gpu_only=True)
    r.check("two GPUs: after stop, no compute process", seen["apps_after_stop"] == [], seen["apps_after_stop"],
            gpu_only=True)
    print(json.dumps({"two_gpus_gateway": gw}), flush=True)
