"""Shared helpers for the reliability suite (tests/test_reliability_*.py) and its figures.

* counts: every loop count is ``base * AUTO_INFER_RELIABILITY_SCALE`` (default 1: the default run
  stays fast; ``AUTO_INFER_RELIABILITY_SCALE=5`` gives the counts docs/reliability.md quotes);
* figures: each test records what it tried and how many ended well; with
  ``AUTO_INFER_RELIABILITY_OUT=/path/figures.json`` they are merged into that file, and
  ``python -m tests.reliability_tools /path/figures.json`` prints them as a Markdown table;
* real fault injection: a child ``auto-infer`` in its own process group to kill, a TCP listener
  on 127.0.0.1 that counts connections (a "proxy" nothing should reach offline), a tmpfs mount,
  a byte-level search for sentinel secrets, a read-only check of doit's sqlite state.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.core.settings import load as load_settings
from auto_infer.install import environment
from tests.helpers import CLI, offline

SCALE_VAR = "AUTO_INFER_RELIABILITY_SCALE"
OUT_VAR = "AUTO_INFER_RELIABILITY_OUT"
# Read at import (collection time): the suite's autouse fixture strips AUTO_INFER_* from the
# environment before each test runs.
_SCALE_RAW = os.environ.get(SCALE_VAR, "").strip() or "1"
_OUT = os.environ.get(OUT_VAR, "").strip()


# ---- counts and figures --------------------------------------------------------------------

def scale() -> int:
    try:
        return max(1, int(_SCALE_RAW))
    except ValueError:
        raise ValueError(f"{SCALE_VAR}={_SCALE_RAW!r} is not a whole number") from None


def count(base: int) -> int:
    """How many times to try something: ``base`` at scale 1, ``base * scale`` by hand."""
    return max(1, base * scale())


def record(key: str, *, what: str, tried: int, ok: int, test: str, **details: Any) -> None:
    """Merge one figure into $AUTO_INFER_RELIABILITY_OUT (if set). Call before asserting."""
    if not _OUT:
        return
    path = Path(_OUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(path.suffix + ".lock")
    import fcntl
    with open(lock, "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("figures", {})[key] = {"what": what, "tried": tried, "ok": ok, "test": test,
                                               "details": details}
        data["meta"] = {"scale": scale(), "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                        "python": sys.version.split()[0], "machine": f"{platform.machine()}, "
                        f"{os.cpu_count()} cores", "command": _command()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def _command() -> str:
    return (f"{OUT_VAR}=figures.json {SCALE_VAR}={scale()} "
            "python -m pytest tests/test_reliability_*.py")


def render(path: Path) -> str:
    """The figures file as the Markdown table docs/reliability.md carries."""
    data = json.loads(path.read_text())
    meta = data.get("meta", {})
    lines = [f"Run: {meta.get('finished')}, scale {meta.get('scale')}, Python {meta.get('python')}, "
             f"{meta.get('machine')}.", "", f"    {meta.get('command')}", "",
             "| what was tried | tried | ended well | details |", "|---|---:|---:|---|"]
    for key, fig in sorted(data.get("figures", {}).items()):
        details = "; ".join(f"{k}: {_short(v)}" for k, v in fig.get("details", {}).items())
        lines.append(f"| **{key}**: {fig['what']} | {fig['tried']} | {fig['ok']} | {details} |")
    return "\n".join(lines) + "\n"


def _short(value: Any, limit: int = 240) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


# ---- child processes -----------------------------------------------------------------------

def spawn_cli(args: Sequence[str], env: Mapping[str, str], *, net: bool = True) -> subprocess.Popen[str]:
    """``auto-infer ARGS`` in its own process group (so a kill reaches its children too)."""
    cmd = [*CLI, *args]
    if not net:
        cmd = offline(cmd)
    return subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")


def kill_group(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    """Wait for ``proc``; on a hang, SIGKILL its group (the test then fails on the code)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import signal
        kill_group(proc, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[reliability_tools: killed after {timeout}s]"
    return proc.returncode, out, err


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def health(env: Mapping[str, str]) -> str | None:
    """``environment.health_check`` for the settings ``env`` describes (a lock error is a reason)."""
    try:
        reason = environment.health_check(load_settings(env))
        return None if reason is None else reason.text
    except UserError as exc:
        return f"user error: {exc.what}"


def no_traceback(text: str, server_log: bool = False) -> bool:
    """No traceback of ours (nor an "internal error"). ``server_log``: the output quotes a server's
    log tail, whose own traceback is evidence, not ours -- then only frames of our code count."""
    if "internal error" in text:
        return False
    if server_log:
        import re

        return not re.search(
            r'File "[^"]*/(auto_infer/(?!demo/responder\.py)|tasks/|doit/)', text
        )  # the responder is the server
    return "Traceback (most recent call last)" not in text


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. "--port 41234"): orphan hunting."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if text.encode() in cmdline and state not in ("Z", "X"):
                found.append(int(entry.name))
    return found


# ---- doit's state --------------------------------------------------------------------------

def doit_db_problem(path: Path) -> str | None:
    """None when doit's sqlite file opens read-only, passes integrity_check and has its table."""
    if not path.is_file():
        return f"no doit state at {path}"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                return f"integrity_check: {check}"
            rows = conn.execute("select task_id, task_data from doit").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"sqlite: {exc}"
    for task_id, data in rows:
        try:
            json.loads(data)
        except (TypeError, ValueError):
            return f"task {task_id}: state is not JSON"
    return None


# ---- a listener nothing should reach --------------------------------------------------------

class CountingListener:
    """A TCP listener on 127.0.0.1 that counts connections and answers 502 to each.

    Point HTTP_PROXY / HTTPS_PROXY / ALL_PROXY at :meth:`proxy_url`: a step that respects the
    proxy variables and goes to the network reaches this listener, so ``count`` must stay 0
    during steps that promise to be offline."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.count = 0
        self.first_lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def proxy_url(self, user: str = "", password: str = "") -> str:
        cred = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user or password else ""
        return f"http://{cred}127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.count += 1
            try:
                conn.settimeout(1.0)
                head = conn.recv(256).split(b"\r\n", 1)[0].decode("latin-1", "replace")
                self.first_lines.append(head.split(" HTTP/")[0][:120])
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            finally:
                conn.close()

    def __enter__(self) -> CountingListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def proxy_env(url: str, no_proxy: str = "") -> dict[str, str]:
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                  "http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


# ---- secrets -------------------------------------------------------------------------------

def secret_words() -> tuple[str, str]:
    """Two fresh sentinels, unlikely anywhere by chance (one with characters URLs must quote)."""
    import secrets
    return f"PXY-{secrets.token_hex(8)}-s3cr/t@!", f"sk-KEY{secrets.token_hex(10)}"


def secret_forms(user: str, secret: str) -> list[bytes]:
    """The ways a secret could be written down: raw, URL-quoted, and inside Basic auth."""
    forms = {secret.encode(), quote(secret, safe="").encode(),
             base64.b64encode(f"{user}:{secret}".encode())}
    return sorted(forms)


def find_secrets(roots: Sequence[Path], needles: Sequence[bytes]) -> tuple[int, list[str]]:
    """(files searched, ["path: needle"...]) for every regular file under ``roots``, byte for byte."""
    hits: list[str] = []
    searched = 0
    seen: set[tuple[int, int]] = set()
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not path.is_file() or path.is_symlink() or (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                searched += 1
                data = path.read_bytes()
                hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return searched, hits


# ---- disk full -----------------------------------------------------------------------------

@contextmanager
def tmpfs(path: Path, size: str, inodes: int | None = None) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (e.g. "2m") mounted at ``path``; always unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, size: str, inodes: int | None = None) -> None:
    opts = f"remount,size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    subprocess.run(["mount", "-o", opts, str(path)], check=True)


def can_mount() -> bool:
    return os.geteuid() == 0 and sys.platform.startswith("linux")


# ---- hostile model configs ----------------------------------------------------------------

RESPONDER_CMD = [sys.executable, "-m", "auto_infer.demo.responder", "--host", "{host}", "--port", "{port}",
                 "--model", "{served_model_name}"]


@dataclass(frozen=True)
class Hostile:
    kind: str
    text: bytes                  # the model config file
    says: tuple[str, ...]        # the message must hold each (besides the file, unless overrides)
    overrides: str = ""
    note: str = ""


def base_config(ports: tuple[int, int]) -> dict[str, Any]:
    """A valid model config: two responder instances (the `command` engine) on ``ports``."""
    def inst(name: str, port: int, gpu: str) -> dict[str, Any]:
        return {"control": {"command": list(RESPONDER_CMD), "gpu_ids": gpu},
                "server": {"port": port, "served_model_name": f"{name}-model"}}
    return {"master": {"enable": True},
            "instance": {"control": {"ready_timeout": 30, "stop_grace": 2}, "server": {"host": "127.0.0.1"},
                         "alpha": inst("alpha", ports[0], "0"), "beta": inst("beta", ports[1], "1")}}


def _toml(data: dict[str, Any]) -> bytes:
    import tomlkit
    return tomlkit.dumps(data).encode()


WRONG_TYPES: dict[tuple[str, str], list[Any]] = {
    ("master", "enable"): ["yes", 1, [True], {"a": 1}, 1.5],
    ("master", "python_path"): [1, True, ["python"], {"a": 1}],
    ("master", "server_module"): [3, False, ["sglang"]],
    ("control", "enabled"): ["true", 0, [1]],
    ("control", "background"): ["no", 2.5],
    ("control", "log_dir"): [1, ["logs"], True],
    ("control", "gpu_ids"): [True, 1.5, {"a": 1}, "0,x", "0,0", "-1", "0,,1"],
    ("control", "ready_timeout"): ["soon", True, [60], {"s": 1}],
    ("control", "stop_grace"): ["5s", [1], False],
    ("control", "smoke_prompt"): [1, True, ["hi"]],
    ("control", "api_key_env"): [1, ["KEY"], {"a": "b"}],
    ("control", "env"): ["A=1", 1, [1], {"X": [1]}, {"X": {"y": 1}}],
    ("control", "command"): ["python -m srv", 1, {"a": 1}, [1, 2], [], ["srv", "--port", "{prot}"],
                             ["srv", "{port"]],
    ("server", "port"): ["abc", True, 1.5, [1], {"a": 1}],
    ("server", "host"): [5, True, [1]],
    ("server", "tp_size"): ["two", 0, -1, 1.5],
    ("server", "rope"): [[[1]], [[1, 2], [3]]],
}
HUGE: dict[tuple[str, str], list[Any]] = {
    ("server", "port"): [0, -1, 65536, 70000, 2**63 - 1, -(2**63)],
    ("control", "ready_timeout"): [0, -1, -1e308, float("nan"), float("-inf")],
    ("control", "stop_grace"): [-1, float("nan"), float("-inf"), -1e-9],
    ("server", "tp_size"): [10**12, 2**63 - 1, 3],          # more GPUs than gpu_ids gives
    ("server", "mem_fraction_static"): [0, 1.5, -0.1, float("nan"), float("inf"), 1e308],
    ("server", "nnodes"): [0, -2],
}
PATH_NAMES = ["../escape", "../../../../tmp/escape", "a/b", "/abs", "", ".", "..", "x\ny", "x\u0000y",
              "n" * 300, "tab\there", "a/../../b"]
SYNTAX = ["= 1", "key = ", 'key = "unclosed', "[instance.alpha", "[[instance]]", "key = 1 2", "k = [1, 2",
          "k = {a = 1", 'k = "\\q"', "\x07bell = 1", "[master]\nenable = true",
          "[instance.alpha.server]\nport = 1"]


def _table(data: dict[str, Any], which: str, rng: Any) -> tuple[dict[str, Any], str]:
    name = rng.choice(["alpha", "beta"])
    if which == "master":
        return data["master"], "[master]"
    if which == "control":
        return (data["instance"]["control"], "[instance.control]") if rng.random() < 0.3 else \
            (data["instance"][name]["control"], f"[instance.{name}.control]")
    return data["instance"][name]["server"], f"[instance.{name}.server]"


def hostile_configs(n: int, ports: tuple[int, int], model_dir: Path, seed: int = 7) -> list[Hostile]:
    """``n`` invalid model configs, round-robin over the kinds, each with one fault."""
    import random
    rng = random.Random(seed)
    makers = [_wrong_type, _unknown_key, _duplicate_port, _duplicate_name, _gpu_overlap, _huge,
              _path_name, _syntax, _overrides]
    return [makers[i % len(makers)](rng, ports, model_dir) for i in range(n)]


def _wrong_type(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    data = base_config(ports)
    (which, key) = rng.choice(sorted(WRONG_TYPES))
    table, where = _table(data, which, rng)
    if key in ("command", "gpu_ids"):       # every instance sets its own: a bad default would be unused
        name = rng.choice(["alpha", "beta"])
        table, where = data["instance"][name]["control"], f"[instance.{name}.control]"
    value = rng.choice(WRONG_TYPES[(which, key)])
    table[key] = value
    return Hostile("wrong type", _toml(data), (key,), note=f"{where} {key} = {value!r}")


def _unknown_key(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    data = base_config(ports)
    key = rng.choice(["readytimeout", "gpuids", "enabel", "comand", "log-dir", "ports", "x" + str(rng.randrange(999))])
    where = rng.choice(["master", "control", "instance", "top"])
    if where == "top":
        data[key] = {"a": 1}
    elif where == "instance":
        data["instance"][rng.choice(["alpha", "beta"])][key] = {"port": 1}
    else:
        _table(data, where, rng)[0][key] = 1
    return Hostile("unknown key", _toml(data), (key,), note=f"{where}: {key}")


def _duplicate_port(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    data = base_config(ports)
    how = rng.choice(["same", "shared default"])
    if how == "same":
        data["instance"]["beta"]["server"]["port"] = ports[0]
    else:                                   # both inherit [instance.server] port
        for name in ("alpha", "beta"):
            del data["instance"][name]["server"]["port"]
        data["instance"]["server"]["port"] = ports[0]
    return Hostile("duplicate port", _toml(data), ("port", "alpha", "beta"), note=how)


def _duplicate_name(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    text = _toml(base_config(ports)).decode()
    extra = rng.choice(['[instance.alpha.server]\nport = 1\n', '[instance."alpha".control]\nenabled = true\n',
                        '[instance.beta]\nserver = { port = 2 }\n'])
    return Hostile("duplicate name", (text + "\n" + extra).encode(), ("line",), note=extra.splitlines()[0])


def _gpu_overlap(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    data = base_config(ports)
    data["master"].update(python_path=sys.executable, server_module="auto_infer.demo.responder")
    a, b = rng.choice([("0,1", "1,2"), ("0", "0"), ("all", "3"), ("2,3", "3")])
    for name, gpus in (("alpha", a), ("beta", b)):
        del data["instance"][name]["control"]["command"]
        data["instance"][name]["control"]["gpu_ids"] = gpus
        data["instance"][name]["server"]["model_path"] = str(model_dir)
    mem = rng.choice([None, (0.6, 0.6), (0.5, None)])
    if mem:
        for name, m in zip(("alpha", "beta"), mem, strict=True):
            if m is not None:
                data["instance"][name]["server"]["mem_fraction_static"] = m
    return Hostile("overlapping GPUs", _toml(data), ("share GPUs",), note=f"{a} / {b}, mem {mem}")


def _huge(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    data = base_config(ports)
    (which, key) = rng.choice(sorted(HUGE))
    table, where = _table(data, which, rng)
    value = rng.choice(HUGE[(which, key)])
    table[key] = value
    if key == "nnodes":
        table.update(node_rank=0, dist_init_addr="10.0.0.1:5000")
    return Hostile("huge or impossible number", _toml(data), (key,), note=f"{where} {key} = {value!r}")


def _path_name(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    data = base_config(ports)
    name = rng.choice(PATH_NAMES)
    data["instance"][name] = data["instance"].pop("beta")
    return Hostile("path trick in a name", _toml(data), ("instance",), note=repr(name))


def _syntax(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    lines = _toml(base_config(ports)).decode().splitlines()
    bad = rng.choice(SYNTAX)
    at = rng.randrange(len(lines) + 1)
    if rng.random() < 0.15:
        return Hostile("TOML syntax", b"\xff\xfe" + "\n".join(lines).encode(), ("not UTF-8 text",), note="not UTF-8")
    lines[at:at] = bad.splitlines()
    says = ("instance",) if bad == "[[instance]]" else ("line",)   # may parse: then [instance] is a list
    return Hostile("TOML syntax", ("\n".join(lines) + "\n").encode(), says, note=f"line {at + 1}: {bad!r}")


def _overrides(rng: Any, ports: tuple[int, int], model_dir: Path) -> Hostile:
    over = rng.choice(['{', '[1]', '"x"', '{"instance": 5}', '{"master": {"enable": "no"}}',
                       '{"instance": {"alpha": {"server": {"port": "x"}}}}',
                       json.dumps({"instance": {"beta": {"server": {"port": ports[0]}}}}),
                       '{"instance": {"alpha": {"control": {"gpu_ids": [true]}}}}'])
    return Hostile("hostile AUTO_INFER_SGLANG_OVERRIDES", _toml(base_config(ports)), ("AUTO_INFER_SGLANG_OVERRIDES",),
                   overrides=over, note=over)


# ---- workspaces on a shared, warmed cache -------------------------------------------------------

def workspace_env(root: Path, template: Path, cache_root: Path | None = None,
                  **extra: str) -> dict[str, str]:
    """The env-var contract for a workspace at ``root`` (its cache inside unless ``cache_root``)."""
    from tests.helpers import clean_env
    return clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(root),
        "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_PROJECT_DIR": str(root / "sglang-infer"),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(cache_root or root / ".cache" / "sglang-infer"),
        "AUTO_INFER_INSTALLER": "rattler",
        "AUTO_INFER_CHECK_MODULES": "demo_extras",
        "HOME": str(root / "home"),
        **extra,
    })


@dataclass
class WarmedCache:
    """A channel with one package of ``extra_files`` files, warmed once into ``cache_root``."""
    template: Path
    cache_root: Path
    extra_files: int
    install_seconds: float      # how long a clean `install` from this cache took here


_WARMED: dict[int, WarmedCache] = {}


def warmed_cache(base: Path, extra_files: int) -> WarmedCache:
    """Build + warm once per test session (the mirror is stopped afterwards: the rest is offline)."""
    if extra_files in _WARMED:
        return _WARMED[extra_files]
    from auto_infer.demo import channel, mirror
    from tests.helpers import run_cli, small_channel_specs

    root = base / f"warmed-{extra_files}"
    port = free_port()
    conda, wheels = small_channel_specs(extra_files=extra_files)
    built = channel.build(root / "channel", f"http://127.0.0.1:{port}", conda, wheels)
    cache_root = root / "cache"
    with mirror.Mirror(built.root, port):
        r = run_cli(["warm"], workspace_env(root / "seed", built.project, cache_root))
        assert r.returncode == 0, r.stderr
    probe = workspace_env(root / "probe", built.project, cache_root)
    t0 = time.monotonic()
    r = run_cli(["install"], probe)
    seconds = time.monotonic() - t0
    assert r.returncode == 0 and complete(probe, extra_files) is None, r.stderr
    _WARMED[extra_files] = WarmedCache(built.project, cache_root, extra_files, seconds)
    return _WARMED[extra_files]


def prefix_of(env: Mapping[str, str]) -> Path:
    return load_settings(env).env_prefix


def complete(env: Mapping[str, str], extra_files: int) -> str | None:
    """Independent of health_check: every file of the test channel is in the environment."""
    prefix = prefix_of(env)
    hello = prefix / "share" / "hello"
    try:
        n = len(os.listdir(hello))
    except OSError:
        return f"{hello} missing"
    if n != extra_files + 1:
        return f"{hello} has {n} files, not {extra_files + 1}"
    if not (prefix / "bin" / "hello").read_bytes().startswith(b"#!/bin/sh"):
        return "bin/hello damaged"
    if (prefix / "share" / "demo" / "a.txt").read_bytes() != b"a\n":
        return "share/demo/a.txt damaged"
    if not list(prefix.glob("lib/python*/site-packages/demo_extras/__init__.py")):
        return "the wheel demo_extras is not installed"
    return None


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ[OUT_VAR])), end="")
