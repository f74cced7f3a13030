"""The evidence of a serve run: Markdown for people, JSON for machines, under ${WORKSPACE}/reports/.

Per instance: the argv (secrets redacted), GPUs, port, the times (spawned, first answer, ready,
chat done), the chat request and the full response; for the run: the environment's versions from
``check`` and ``nvidia-smi`` where it exists (its table, and which process runs on which GPU). Both files are
scrubbed of every known secret.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_infer import __version__
from auto_infer.core import redact
from auto_infer.core.fsutil import atomic_write_text, read_json
from auto_infer.core.settings import Settings
from auto_infer.serve import gpus

if TYPE_CHECKING:
    from auto_infer.serve.model import ModelConfig
    from auto_infer.serve.outcome import Result


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(moment)) + f".{int(moment % 1 * 1000):03d}"


# nvidia-smi's own CSV: which GPU is which, and which process (pid) holds memory on which GPU
SMI_QUERIES = {
    "gpus": ["--query-gpu=index,uuid,name,driver_version,memory.used", "--format=csv"],
    "compute_apps": ["--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv"],
}


def nvidia_smi(*args: str) -> str:
    return gpus.smi(*args)[1]


def instance_data(r: Result) -> dict[str, Any]:
    launch, inst = r.launch, r.launch.inst
    start = r.spawned

    def since(moment: float | None) -> float | None:
        return round(moment - start, 3) if moment is not None and start is not None else None

    chat = r.chat
    times = {"spawned": start, "first_answer": r.ready.first_answer, "ready": r.ready.ready,
             "chat_done": chat.done if chat else None}        # wall clock, seconds since the epoch
    return {
        "name": inst.name, "record": launch.key, "engine": inst.engine, "ok": r.ok, "reason": r.reason,
        "worker": inst.worker.describe() if inst.worker else None,
        "action": r.action, "why": r.why, "pid": r.pid, "host": inst.host, "port": inst.port,
        "base_url": launch.target.base_url,
        "gpus": list(inst.control.gpu_ids) if inst.control.gpu_ids is not None else "all (inherited)",
        "argv": launch.redacted_argv(), "added_env": redact.redact_env(launch.added, launch.secrets),
        "log": str(launch.log), "launch_record": str(launch.launch_record), "config_hash": launch.config_hash,
        "times": times, "times_iso": {k: iso(v) for k, v in times.items()},
        "seconds_after_spawn": {"first_answer": since(r.ready.first_answer), "ready": since(r.ready.ready),
                                "chat_done": since(chat.done if chat else None)},
        "model_id": r.ready.model_id,
        "weights": dict(inst.weights) if inst.weights else None,
        "chat": None if chat is None else {"request": chat.request, "status": chat.status, "ok": chat.ok,
                                           "answer": chat.answer, "seconds": round(chat.seconds, 3),
                                           "response": chat.response},
    }


def collect(settings: Settings, cfg: ModelConfig, results: list[Result], started: float,
            gateway: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "tool": f"auto-infer {__version__}", "created": iso(time.time()), "started": iso(started),
        "host": socket.gethostname(), "config": str(cfg.path),
        "overrides": bool(settings.overrides.strip()),
        "ok": all(r.ok for r in results) and (gateway is None or bool(gateway["ok"])),
        "summary": f"{sum(r.ok for r in results)} of {len(results)} instances ready and answering",
        "environment": read_json(settings.check_path)
                       or "not checked (run `auto-infer check` to record the versions)",
        "nvidia_smi": nvidia_smi(),
        "nvidia_smi_queries": {name: nvidia_smi(*args) for name, args in SMI_QUERIES.items()},
        "instances": [instance_data(r) for r in results],
        "gateway": gateway,
    }


def markdown(data: dict[str, Any]) -> str:
    out = [f"# auto-infer serve report, {data['created']}", "",
           f"- result: **{data['summary']}**", f"- config: `{data['config']}`"
           + (" (with AUTO_INFER_SGLANG_OVERRIDES)" if data["overrides"] else ""),
           f"- host: {data['host']}; {data['tool']}", ""]
    env = data["environment"]
    out += ["## Environment (from `check`)", ""]
    out += ["```json", json.dumps(env, indent=2), "```", ""] if isinstance(env, dict) else [env, ""]
    for inst in data["instances"]:
        out += _instance_md(inst)
    if data.get("gateway"):
        out += _gateway_md(data["gateway"])
    out += ["## nvidia-smi", "", "```", data["nvidia_smi"].rstrip(), "```", ""]
    for name, args in SMI_QUERIES.items():
        out += [f"`nvidia-smi {' '.join(args)}`:", "", "```", data["nvidia_smi_queries"][name].rstrip(), "```", ""]
    return "\n".join(out)


def _instance_md(i: dict[str, Any]) -> list[str]:
    mark = "ready and answering" if i["ok"] else f"FAILED: {i['reason'].splitlines()[0]}"
    if i["ok"] and i.get("worker"):
        mark = f"running, {i['worker']}"
    secs = i["seconds_after_spawn"]
    timing = " · ".join(f"{k.replace('_', ' ')} +{v:.3f} s" for k, v in secs.items() if v is not None)
    rows = [
        ("action", f"{i['action']} ({i['why']})"),
        ("pid", i["pid"]),
        ("url", i["base_url"]),
        ("GPUs", i["gpus"]),
        ("model", i["model_id"]),
        ("weights", (i["weights"] or {}).get("label", "model_path (not audited)")),
        ("spawned", i["times_iso"]["spawned"]),
        ("timeline", timing or "-"),
        ("log", f"`{i['log']}`"),
        ("config hash", i["config_hash"]),
    ]
    out = [
        f"## {i.get('record') or i['name']}: {mark}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "Command (secrets redacted):",
        "",
        "```",
        " ".join(i["argv"]),
        "```",
        "",
    ]
    if i["reason"] and not i["ok"]:
        out += ["What happened:", "", "```", i["reason"], "```", ""]
    if i["chat"] is not None:
        out += ["Chat request:", "", "```json", json.dumps(i["chat"]["request"], indent=2), "```", "",
                f"Response (HTTP {i['chat']['status']}, {i['chat']['seconds']} s):", "", "```json",
                json.dumps(i["chat"]["response"], indent=2), "```", ""]
    return out


def _gateway_md(g: dict[str, Any]) -> list[str]:
    mark = "routing and answering" if g["ok"] else f"FAILED: {g['reason'].splitlines()[0]}"
    rows = [("action", f"{g['action']} ({g['why']})"), ("pid", g["pid"]), ("url", g["url"]),
            ("policy", g["policy"]), ("fronts", ", ".join(g["fronts"]) or "-"), ("log", f"`{g['log']}`")]
    out = [f"## gateway ({g['name']}): {mark}", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
           "Command:", "", "```", " ".join(g["argv"]), "```", ""]
    if g["chat"] is not None:
        out += [f"Chat through the gateway (HTTP {g['chat']['status']}, {g['chat']['seconds']} s):", "", "```json",
                json.dumps(g["chat"]["response"], indent=2), "```", ""]
    return out


def write(settings: Settings, cfg: ModelConfig, results: list[Result], started: float,
          gateway: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write serve-<time>.md/.json (and serve-latest.*); return the Markdown and JSON paths."""
    data = collect(settings, cfg, results, started, gateway)
    hidden = [s for r in results for s in r.launch.secrets]
    text_json = redact.scrub(json.dumps(data, indent=2) + "\n", hidden)
    text_md = redact.scrub(markdown(data) + "\n", hidden)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + f"-{int(started % 1 * 1000):03d}"
    md, js = settings.reports_dir / f"serve-{stamp}.md", settings.reports_dir / f"serve-{stamp}.json"
    for path, text in ((md, text_md), (js, text_json),
                       (settings.reports_dir / "serve-latest.md", text_md),
                       (settings.reports_dir / "serve-latest.json", text_json)):
        atomic_write_text(path, text)
    return md, js
