"""The air-gapped half: from carried files to a llama.cpp server on the GPU, with the product's commands.

    python tests/gpu/airgap_run.py --bundle FILE --out DIR [--llama-src TAR | --llama-server BIN]
        [--device cuda|cpu] [--two-gpu auto|on|off] [--work DIR]

Steps (each timed; the CLI steps are `auto-infer ...` in their own process, offline ones inside
`unshare -n` where it works, else with proxies pointed at a dead port): build llama-server from the
carried llama.cpp source (CUDA for sm_90 with --device cuda; skipped with --llama-server) →
`bundle import` → `install` → `check` (CUDA seen, GPU named) → `serve` an infer-dev llama.cpp
config (gpu_ids "0", every layer on the GPU, the weights from the imported Hub snapshot) → its
chat, a timed generation, nvidia-smi, the server's own log → `stop` → `supervise`: SIGKILL of the
server comes back on the GPU, SIGTERM leaves no compute process. With two GPUs (or --two-gpu on):
two servers on "0" and "1", one over "0,1", the gateway in front of the first two (airgap_two.py).
DIR gets 6 files: evidence.json (every check, timing and figure, check.json's content),
steps.log (every command's output), build.log, model-config.toml, serve-report.md, servers.log
(device_airgap.sh adds run.log and the built llama-server: 8, what a device run brings back). Exit 0 only
when every check passes; --device cpu skips the GPU
checks (listed as skipped, never passed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import airgap_config as cfg
import airgap_probe as probe
import evidence

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.core.netns import can_unshare
from auto_infer.demo.driver import Steps

CMAKE = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
         "-DCMAKE_INSTALL_RPATH=$ORIGIN", "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON"]
CUDA = ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90", "-DGGML_CUDA_FA=OFF"]
CPU = ["-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
       "-DGGML_CPU_REPACK=OFF"]


def build_server(src: Path, work: Path, device: str, log: Path) -> Path:
    """cmake + ninja, target llama-server only; the log goes to ``log``."""
    with tarfile.open(src) as tf:
        tf.extractall(work / "src", filter="data")
    tree = next((work / "src").glob("*/CMakeLists.txt")).parent
    jobs = str(min(os.cpu_count() or 1, 16))
    flags = CMAKE + (CUDA if device == "cuda" else CPU)
    with open(log, "w") as fh:
        for cmd in (["cmake", "-S", str(tree), "-B", str(work / "build"), "-G", "Ninja", *flags],
                    ["cmake", "--build", str(work / "build"), "--target", "llama-server", "-j", jobs]):
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode:
                raise UserError(f"the llama-server build failed: {' '.join(cmd[:3])}", where=str(log))
    return work / "build" / "bin" / "llama-server"


def cli_env(work: Path, config: Path, device: str) -> dict[str, str]:
    """The air-gapped host's contract: its own workspace and cache, an empty template folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTO_INFER_", "HF_"))}
    env.update(cfg.NO_MULTICAST, AUTO_INFER_WORKSPACE_DIR=str(work / "ws"),
               AUTO_INFER_SGLANG_TEMPLATE_DIR=str(work / "template"), AUTO_INFER_SGLANG_CONFIG=str(config),
               AUTO_INFER_INSTALLER="rattler", AUTO_INFER_CHECK_MODULES="torch" if device == "cuda" else "none",
               AUTO_INFER_LOCK_TIMEOUT="60", AUTO_INFER_SUPERVISE_BACKOFF="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args, self.gpu = args, args.device == "cuda"
        self.out = args.out.resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = (args.work or Path(tempfile.mkdtemp(prefix="auto-infer-airgap-"))).resolve()
        self.config = self.work / "model-config.toml"
        self.env = cli_env(self.work, self.config, args.device)
        self.steps = Steps(self.out / "steps.log", use_netns=can_unshare())
        self.checks: list[evidence.Check] = []
        self.seen: dict[str, Any] = {"times_s": {}}
        self.reports: list[str] = []

    def timed(self, label: str, fn: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.monotonic()
        try:
            return fn(*a, **kw)
        finally:
            self.seen["times_s"][label] = round(time.monotonic() - t0, 2)
            print(f"  {label}: {self.seen['times_s'][label]} s", flush=True)

    def cli(self, label: str, args: list[str], offline: bool = False) -> str:
        out = self.timed(label, self.steps.run, label, args, self.env, offline=offline)
        return str(out)

    def check(self, what: str, ok: bool, detail: Any = "", gpu_only: bool = False) -> None:
        self.checks.append(evidence.check(what, None if gpu_only and not self.gpu else ok, detail))

    def server(self) -> Path:
        if self.args.llama_server:
            return Path(self.args.llama_server).resolve()
        return Path(self.timed("build llama-server", build_server, self.args.llama_src, self.work,
                               self.args.device, self.out / "build.log"))

    def airgap(self) -> None:
        binary = self.server()
        devices = subprocess.run([str(binary), "--list-devices"], capture_output=True, text=True, timeout=120)
        self.seen["list_devices"] = (devices.stdout + devices.stderr).strip().splitlines()[-6:]
        self.check("llama-server lists CUDA0 (built with CUDA)", "CUDA0" in devices.stdout + devices.stderr,
                   self.seen["list_devices"], gpu_only=True)
        self.seen["import"] = self.cli("bundle import", ["bundle", "import", str(self.args.bundle)], True)
        self.seen["install"] = self.cli("install", ["install"], True)
        self.seen["check"] = self.cli("check", ["check"], True)
        data = json.loads((self.work / "ws" / ".auto-infer" / "check.json").read_text())
        self.seen["check_json"] = data
        names = data.get("gpu_names") or []
        self.check("check: torch.cuda.is_available() in the environment", data.get("cuda_available") is True,
                   data.get("cuda_available"), gpu_only=True)
        self.check("check: the GPU is named", bool(names) and all(names), names, gpu_only=True)
        self.one_gpu(str(binary), names[0] if names else "")
        self.supervise()
        if self.two_gpus():
            import airgap_two
            airgap_two.run(self, str(binary))

    def two_gpus(self) -> bool:
        want = self.args.two_gpu
        return want == "on" or (want == "auto" and self.gpu and len(evidence.gpu_uuids()) >= 2)

    def one_gpu(self, binary: str, gpu_name: str) -> None:
        port = free_port()
        cfg.write(self.config, binary, cfg.one_gpu(port))
        uuid0 = evidence.gpu_uuids().get("0")
        try:
            self.seen["serve"] = self.cli("serve (start, ready, chat, report)", ["serve"])
            row = probe.rows(self.env)[cfg.ALIAS]
            self.seen["status"] = row
            self.seen["chat"] = self.cli("chat", ["chat"])
            self.seen["generation"] = probe.generate(f"http://127.0.0.1:{port}", cfg.ALIAS)
            self.seen["apps_running"] = evidence.compute_apps()
            self.seen["nvidia_smi_running"] = probe.smi_text() if self.gpu else ""
        finally:
            self.cli("stop", ["stop"])
        self.seen["apps_after_stop"] = probe.wait_apps_gone(self.gpu)
        report = json.loads((self.work / "ws" / "reports" / "serve-latest.json").read_text())
        inst = report["instances"][0]
        self.reports.append((self.work / "ws" / "reports" / "serve-latest.md").read_text())
        self.seen["ready_after_spawn_s"] = inst.get("seconds_after_spawn", {})
        self.seen["server_log"] = lines = probe.log_lines(Path(row["log"]))
        gen = self.seen["generation"]
        self.check("serve: ready, and its smoke chat answered", inst.get("ok") is True, inst.get("reason"))
        self.check("chat: HTTP 200, non-empty text", gen["status"] == 200 and bool(gen["text"].strip()), gen)
        self.check("the weights are the imported Hub snapshot's GGUF",
                   f"models--{cfg.REPO.replace('/', '--')}" in str(inst.get("argv")), inst.get("argv"))
        self.check("report names the GPU", bool(gpu_name) and gpu_name in self.reports[0], gpu_name, gpu_only=True)
        on = probe.layers_on_gpu(lines)
        self.check(
            "server log: every layer offloaded, model buffer on CUDA0",
            on["all_offloaded"] and bool(on["buffer"]),
            on,
            gpu_only=True,
        )
        self.check(
            "nvidia-smi: the server's pid on GPU 0",
            probe.pids_on(row["pid"], self.seen["apps_running"]) == [uuid0],
            {"pid": row["pid"], "apps": self.seen["apps_running"], "gpu0": uuid0},
            gpu_only=True,
        )
        self.check("after stop: no compute process", self.seen["apps_after_stop"] == [], self.seen["apps_after_stop"],
                   gpu_only=True)

    def supervise(self) -> None:
        uuid0 = evidence.gpu_uuids().get("0")
        sup = self.timed("supervise round (start, SIGKILL, back, SIGTERM)", probe.supervise_round, self.env,
                         cfg.ALIAS, self.out / "steps.log", self.gpu, uuid0)
        self.seen["supervise"] = sup
        for what, ok in sup["pass"].items():
            self.check(f"supervise: {what}", ok, {k: sup.get(k) for k in ("first", "restarted", "supervise_exit")})

    def collect(self) -> None:
        ws = self.work / "ws"
        if self.config.is_file():
            shutil.copyfile(self.config, self.out / "model-config.toml")
        two = self.seen.get("two_gpus", {}).get("report_md")
        (self.out / "serve-report.md").write_text("\n\n".join(self.reports + ([two] if two else [])))
        with open(self.out / "servers.log", "w") as fh:
            for log in sorted((ws / "logs" / "sglang").glob("*/*.log")):
                fh.write(f"==> {log} <==\n{log.read_text(errors='replace')[-200_000:]}\n")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--llama-src", type=Path, help="the llama.cpp source tarball to build")
    p.add_argument("--llama-server", help="an llama-server already built (skips the build)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--two-gpu", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--work", type=Path)
    args = p.parse_args()
    if not (args.llama_src or args.llama_server):
        p.error("give --llama-src (to build) or --llama-server")
    return args


def main() -> int:
    run = Run(parse())
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        run.airgap()
    except (UserError, TimeoutError, RuntimeError, KeyError, OSError) as exc:
        run.checks.append(evidence.check("the journey ran to its end", False, f"{type(exc).__name__}: {exc}"))
    finally:
        run.collect()
    passed = all(c["result"] != "FAIL" for c in run.checks) and bool(run.checks)
    probe.dump(run.out / "evidence.json", {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "device": run.args.device, "passed": passed,
                                           "offline_steps": "unshare -n" if run.steps.use_netns else "dead proxies",
                                           "checks": run.checks, "seen": run.seen})
    for c in run.checks:
        print(f"  [{c['result']:>7}] {c['check']}")
    print(f"air-gap proof {'PASSED' if passed else 'FAILED'} ({run.args.device}); evidence in {run.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
