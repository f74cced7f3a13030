"""procs (spawn, stop, the log filter, recycled pids), probe and the responder, with real processes."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from auto_infer.core.net import free_port
from auto_infer.serve import probe, procs

RESPONDER = Path(__file__).resolve().parents[1] / "auto_infer" / "demo" / "responder.py"


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    code = ("import signal, subprocess, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\nprint('up', flush=True)\n"
            "time.sleep(60)\n")
    handle = procs.spawn(py(code), env=dict(os.environ), log=log, cwd=tmp_path, secrets=[])
    wait_for(lambda: len(procs.group_members(handle.pid)) == 2)
    assert os.getpgid(handle.pid) == handle.pid != os.getpgid(0)           # its own group and session
    assert os.getsid(handle.pid) == handle.pid
    how = procs.stop_group(handle.pid, handle.ticks, grace=0.3, popen=handle.popen)
    assert how == "killed (still running 0.3s after SIGTERM)"
    assert procs.group_members(handle.pid) == [] and handle.ended() == "killed by signal 9"
    assert procs.stop_group(handle.pid, handle.ticks, grace=0.3) == "not running"     # idempotent


def test_a_polite_server_stops_on_sigterm(tmp_path: Path) -> None:
    handle = procs.spawn(py("import time; print('hi', flush=True); time.sleep(60)"), env=dict(os.environ),
                         log=tmp_path / "p.log", cwd=tmp_path, secrets=[])
    wait_for(lambda: procs.tail(tmp_path / "p.log") == ["hi"])
    assert procs.stop_group(handle.pid, handle.ticks, grace=10, popen=handle.popen) == "stopped"
    assert handle.ended() == "killed by signal 15"


def test_a_recycled_pid_is_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(py("import time; time.sleep(60)"), start_new_session=True)
    try:
        ticks = procs.start_ticks(other.pid)
        assert ticks is not None and procs.is_ours(other.pid, ticks)
        # a record whose start time differs describes another process that had this pid
        assert not procs.is_ours(other.pid, ticks + 1)
        assert procs.stop_group(other.pid, ticks + 1, grace=0.1) == "not running"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_log_filter_masks_secrets_and_keeps_the_exit_code(tmp_path: Path) -> None:
    secret, log = "hunter2-very-secret", tmp_path / "s.log"
    code = (f"import sys\nprint('args: --api-key {secret}', flush=True)\n"
            f"sys.stderr.write('progress 50%\\rprogress 100% {secret}\\n')\n"
            f"sys.stdout.write('no newline at the end {secret}')\nsys.exit(7)\n")
    handle = procs.spawn(py(code), env=dict(os.environ), log=log, cwd=tmp_path, secrets=[secret])
    wait_for(lambda: handle.ended() is not None)
    text = log.read_text()
    assert secret not in text and text.count("***") == 3, text
    assert "args: --api-key ***" in text and text.endswith("no newline at the end ***")
    assert handle.ended() == "exit code 7"
    assert procs.tail(log, 2) == ["progress 100% ***", "no newline at the end ***"]


def test_the_log_filter_is_in_the_group_and_dies_with_it(tmp_path: Path) -> None:
    handle = procs.spawn(py("import time; time.sleep(60)"), env=dict(os.environ), log=tmp_path / "f.log",
                         cwd=tmp_path, secrets=["k3y-value"])
    wait_for(lambda: len(procs.group_members(handle.pid)) == 2)       # the filter and the server
    assert procs.stop_group(handle.pid, handle.ticks, grace=5, popen=handle.popen) == "stopped"
    assert procs.group_members(handle.pid) == []


def test_probe_reports_an_exit_at_once_with_the_log_tail(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "crash.log"
    handle = procs.spawn([sys.executable, str(RESPONDER), "--port", str(port), "--crash-on-start"],
                         env=dict(os.environ), log=log, cwd=tmp_path, secrets=[])
    target = probe.Target("crashy", probe.base_url("0.0.0.0", port), "m", "command")
    seen = probe.wait_ready(target, handle, log, timeout=300, note=lambda _: None)
    assert not seen.ok and "the process ended while starting (exit code 3)" in seen.reason
    assert "RuntimeError: crash on start" in seen.reason and target.base_url == f"http://127.0.0.1:{port}"


def test_responder_is_a_standalone_stdlib_file(tmp_path: Path) -> None:
    tree = ast.parse(RESPONDER.read_text())
    imported = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
    copy = tmp_path / "elsewhere" / "responder.py"
    copy.parent.mkdir()
    shutil.copy(RESPONDER, copy)
    base = getattr(sys, "_base_executable", sys.executable)       # an interpreter without auto_infer
    port = free_port()
    proc = subprocess.Popen([base, "-I", str(copy), "--port", str(port), "--served-model-name", "solo",
                             "--api-key", "k", "--tp-size", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/health"))
        assert requests.get(f"{url}/v1/models", timeout=5).status_code == 401
        auth = {"Authorization": "Bearer k"}
        assert requests.get(f"{url}/v1/models", headers=auth, timeout=5).json()["data"][0]["id"] == "solo"
        env = requests.get(f"{url}/debug/env", headers=auth, timeout=5).json()
        assert env["argv"][0] == str(copy) and env["pid"] == proc.pid
        answer = requests.post(f"{url}/v1/chat/completions", headers=auth, timeout=5,
                               json={"model": "solo", "messages": [{"role": "user", "content": "hi"}]}).json()
        assert answer["choices"][0]["message"]["content"] == "Hello from solo. You said: hi"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0 and "ignoring --tp-size 2" in out and "SIGTERM: shutting down" in out


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("flags,health,content", [
    (["--never-ready"], 503, None),
    (["--empty-answer"], 200, ""),
])
def test_responder_misbehaves_on_request(flags: list[str], health: int, content: str | None, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(RESPONDER), "--port", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _models(url))
        time.sleep(0.2)
        assert requests.get(f"{url}/health_generate", timeout=5).status_code == health
        if content is not None:
            got = requests.post(f"{url}/v1/chat/completions", json={"messages": [{"content": "x"}]}, timeout=5)
            assert got.json()["choices"][0]["message"]["content"] == content
            target = probe.Target("e", url, None, "command")
            assert probe.chat(target, "responder", "x").reason == "the answer is empty"
    finally:
        proc.kill()
        proc.wait()


def _models(url: str) -> bool:
    try:
        return requests.get(f"{url}/v1/models", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
