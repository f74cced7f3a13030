"""What the GPU proof reads and asserts: nvidia-smi's CSV, each server's own line, the records.

Each check is (what, ok, detail); the proof passes when every check does. On a machine without a
GPU (``--device cpu``) the GPU checks are listed as skipped, never as passed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

PROOF_PREFIX = "AUTO_INFER_GPU_PROOF "
Check = dict[str, Any]


def smi_rows(query: str) -> list[list[str]] | None:
    """``nvidia-smi --query-X=... --format=csv,noheader`` as rows; None when nvidia-smi cannot answer."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    proc = subprocess.run([exe, query, "--format=csv,noheader"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in proc.stdout.splitlines() if line.strip()]


def gpu_uuids() -> dict[str, str]:
    """GPU index -> uuid."""
    return {row[0]: row[1] for row in smi_rows("--query-gpu=index,uuid") or []}


def compute_apps() -> list[dict[str, str]]:
    rows = smi_rows("--query-compute-apps=pid,gpu_uuid,used_memory") or []
    return [{"pid": r[0], "gpu_uuid": r[1], "used_memory": r[2]} for r in rows if len(r) >= 3]


def server_line(log: Path) -> dict[str, Any] | None:
    """The line engine_entry.py printed about its own process, from the server's log."""
    if not log.is_file():
        return None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(PROOF_PREFIX):
            data: dict[str, Any] = json.loads(line[len(PROOF_PREFIX):])
            return data
    return None


def check(what: str, ok: bool | None, detail: Any = "") -> Check:
    """ok None: skipped (no GPU here)."""
    return {"check": what, "result": "skipped" if ok is None else ("pass" if ok else "FAIL"),
            "detail": detail}


def check_env(data: dict[str, Any], gpu: bool, need: int) -> list[Check]:
    names = data.get("gpu_names") or []
    return [
        check("check: torch imports in the environment", "torch" in data.get("modules", {}), data.get("modules")),
        check("check: torch.cuda.is_available() is True", data.get("cuda_available") is True if gpu else None,
              data.get("cuda_available")),
        check(f"check: at least {need} GPU(s), each named", len(names) >= need and all(names) if gpu else None,
              {"gpu_count": data.get("gpu_count"), "gpu_names": names}),
        check("check: a cuDNN version", bool(data.get("cudnn_version")) if gpu else None, data.get("cudnn_version")),
    ]


def check_server(name: str, gpu_id: str, row: dict[str, Any], seen: dict[str, Any] | None,
                 apps: list[dict[str, str]], uuids: dict[str, str], gpu: bool) -> list[Check]:
    seen = seen or {}
    pid = str(row.get("pid"))
    on_gpu = sorted({a["gpu_uuid"] for a in apps if a["pid"] == pid})
    return [
        check(f"{name}: status says ready", row.get("state") == "ready", row.get("state")),
        check(f"{name}: its own line comes from the served pid", str(seen.get("pid")) == pid,
              {"status pid": pid, "line pid": seen.get("pid")}),
        check(f"{name}: CUDA_VISIBLE_DEVICES={gpu_id}", seen.get("cuda_visible_devices") == gpu_id,
              seen.get("cuda_visible_devices")),
        check(f"{name}: torch.cuda.device_count() == 1 in the server", seen.get("device_count") == 1 if gpu else None,
              {"device_count": seen.get("device_count"), "names": seen.get("names")}),
        check(f"{name}: nvidia-smi shows pid {pid} on GPU {gpu_id} only",
              on_gpu == [uuids.get(gpu_id)] if gpu else None, {"pid's GPUs": on_gpu, "GPU uuid": uuids.get(gpu_id)}),
    ]


def check_origin(name: str, seen: dict[str, Any] | None, prefix: Path, host_site: tuple[str, ...]) -> list[Check]:
    """The server runs the installed environment's python; serving wheels from it, torch from the host."""
    seen = seen or {}
    return [
        check(f"{name}: runs the environment's python", str(seen.get("executable", "")).startswith(str(prefix)),
              seen.get("executable")),
        check(f"{name}: fastapi from the environment (lock wheel), torch from the host's site-packages",
              str(seen.get("fastapi_file", "")).startswith(str(prefix))
              and any(str(seen.get("torch_file", "")).startswith(d) for d in host_site),
              {"fastapi": seen.get("fastapi_file"), "torch": seen.get("torch_file")}),
    ]


def check_report(report: dict[str, Any], pids: list[str], gpu: bool) -> list[Check]:
    queries = report.get("nvidia_smi_queries") or {}
    apps_text = queries.get("compute_apps", "")
    chats = {i["name"]: bool(i.get("chat") and i["chat"].get("ok")) for i in report.get("instances", [])}
    return [
        check("report: every instance ready and answered a chat", bool(chats) and all(chats.values()), chats),
        check("report: nvidia-smi --query-gpu lines", "uuid" in queries.get("gpus", "") if gpu else None,
              queries.get("gpus")),
        check("report: nvidia-smi --query-compute-apps lists every server pid",
              all(p in apps_text for p in pids) if gpu else None, apps_text),
    ]


def check_stopped(apps_after: list[dict[str, str]], gpu: bool) -> Check:
    return check("after stop: no compute process on any GPU", apps_after == [] if gpu else None, apps_after)
