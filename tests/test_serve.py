"""serve / chat / status / logs / stop through the real CLI: real processes, real HTTP on 127.0.0.1.

The servers are the test responder (auto_infer/demo/responder.py) on free ports, run through the model
config's `command` key, or through the SGLang path (`python -m <server_module> <flags>`) with
server_module = auto_infer.demo.responder. One installed workspace per module (warm once); every test
writes its own model config, uses its own instance names and ports, and stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import registry
from tests.helpers import model_folder, realworld
from tests.helpers.serving import Serve, group_members, listening, responder_config


def test_two_instances_different_gpus_ready_chatted_status_logs_chat(serve: Serve) -> None:
    pa, pb = free_port(), free_port()
    serve.write(responder_config({
        "alpha": {"port": pa, "flags": ["--slow-start", "1"], "control": 'gpu_ids = "0"'},
        "beta": {"port": pb, "flags": ["--slow-start", "1"],
                 "control": 'gpu_ids = "1"\nenv = { BETA_ONLY = "yes" }'}}))
    r = serve.ok("serve", HTTP_PROXY="http://user:pw@proxy.invalid:3128")
    assert "alpha ready" in r.stderr and "beta ready" in r.stderr, r.stderr
    report = serve.report()
    assert report["ok"] and [i["name"] for i in report["instances"]] == ["alpha", "beta"]
    a, b = report["instances"]
    # started together: both were spawned before either was ready (each sleeps 1 s before listening)
    assert max(a["times"]["spawned"], b["times"]["spawned"]) < min(a["times"]["ready"], b["times"]["ready"])
    for inst, gpu, port in ((a, "0", pa), (b, "1", pb)):
        assert inst["gpus"] == [gpu] and inst["port"] == port and inst["chat"]["ok"]
        assert inst["chat"]["response"]["choices"][0]["message"]["content"].startswith(f"Hello from {inst['name']}")
        assert inst["chat"]["request"]["model"] == f"{inst['name']}-model"
        got = serve.debug_env(port)
        assert got["env"]["CUDA_VISIBLE_DEVICES"] == gpu
        assert got["env"]["PATH"].split(os.pathsep)[0] == str(serve.ws.prefix / "bin")
        assert "HTTP_PROXY" not in got["env"] and got["pgid"] == got["pid"] == inst["pid"]
        launch = json.loads(Path(inst["launch_record"]).read_text())
        assert launch["argv"][3:] == got["argv"][1:] == inst["argv"][3:]     # the exact argv, recorded
        assert Path(inst["launch_record"]).parent == Path(inst["log"]).parent
    assert serve.debug_env(pb)["env"]["BETA_ONLY"] == "yes" and "BETA_ONLY" not in serve.debug_env(pa)["env"]
    md = (serve.ws.root / "reports" / "serve-latest.md").read_text()
    assert "## alpha: ready and answering" in md and "nvidia-smi" in md
    assert "`nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv`" in md
    assert set(report["nvidia_smi_queries"]) == {"gpus", "compute_apps"}
    status = json.loads(serve.ok("status", "--json").stdout)
    rows = {row["name"]: row for row in status}
    assert rows["alpha"]["state"] == rows["beta"]["state"] == "ready"
    assert (rows["alpha"]["port"], rows["alpha"]["gpus"], rows["alpha"]["pid"]) == (pa, ["0"], a["pid"])
    table = serve.ok("status").stdout
    assert "NAME" in table and "alpha" in table and "ready" in table
    logs = serve.ok("logs", "-n", "3", "beta").stdout
    assert logs.startswith("==> beta:") and "GET" in logs
    chat = serve.ok("chat", "alpha", "beta")
    assert "alpha: Hello from alpha-model" in chat.stdout and "beta: Hello from beta-model" in chat.stdout


def test_warmup_is_not_ready_early_and_progress_is_shown(serve: Serve, tmp_path: Path) -> None:
    port, ready_file = free_port(), tmp_path / "ready-at"
    # 13 s of warmup: progress lines at 2 s and 12 s; by the second the server has surely logged
    serve.write(
        responder_config({"warm": {"port": port, "flags": ["--warmup", "13", "--ready-file", str(ready_file)]}})
    )
    r = serve.ok("serve")
    inst = serve.report()["instances"][0]
    became_ready = float(ready_file.read_text())
    assert inst["times"]["first_answer"] < became_ready <= inst["times"]["ready"]
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("  … warm: ") and "; log: " in ln]
    assert progress, r.stderr                                                   # progress while waiting
    assert len(progress) >= 2 and "[responder" in progress[-1], progress     # the server's own last line
    print(f"\nreadiness seen {inst['times']['ready'] - became_ready:.3f}s after the responder became ready")


def test_crash_is_reported_at_once_with_log_tail_while_the_other_serves(serve: Serve) -> None:
    good, bad = free_port(), free_port()
    serve.write(
        responder_config(
            {
                "good": {"port": good},
                "bad": {"port": bad, "flags": ["--crash-on-start"], "control": "ready_timeout = 600"},
            }
        )
    )
    t0 = time.monotonic()
    r = serve.cli("serve", timeout=60)        # far below bad's ready_timeout: the exit is seen, not waited out
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert "✗ bad: the process ended while starting (exit code 3)" in r.stderr
    assert "RuntimeError: crash on start, as asked" in r.stderr and "good ready" in r.stderr
    report = serve.report()
    assert [(i["name"], i["ok"]) for i in report["instances"]] == [("good", True), ("bad", False)]
    assert "exit code 3" in report["instances"][1]["reason"] and "crash on start" in report["instances"][1]["reason"]
    assert serve.record("bad")["state"] == "failed" and serve.record("bad")["exit_code"] == 3
    assert "1 of 2 instances did not pass" in r.stderr and "bad: the process ended" in r.stderr
    print(f"\nserve with a crashing instance returned after {took:.2f}s")


def test_never_ready_fails_at_its_timeout_and_is_stopped_while_the_other_stays_up(serve: Serve) -> None:
    up, stuck = free_port(), free_port()
    serve.write(responder_config({"up": {"port": up},
                                  "stuck": {"port": stuck, "flags": ["--never-ready", "--spawn-child"],
                                            "control": "ready_timeout = 1.5\nstop_grace = 1"}}))
    r = serve.cli("serve")
    assert r.returncode == 1
    assert "✗ stuck: not ready after" in r.stderr and "(ready_timeout): /health answers 503" in r.stderr
    rec = serve.record("stuck")
    assert rec["state"] == "failed" and group_members(rec["pid"]) == [] and not listening(stuck)
    rows = {row["name"]: row for row in json.loads(serve.ok("status", "--json").stdout)}
    assert rows["up"]["state"] == "ready" and rows["stuck"]["state"] == "failed" and listening(up)


def test_stop_ends_a_server_that_ignores_sigterm_and_its_whole_group(serve: Serve) -> None:
    port = free_port()
    serve.write(responder_config({"stubborn": {"port": port, "flags": ["--ignore-sigterm", "--spawn-child"],
                                               "control": "stop_grace = 0.5"}}))
    serve.ok("serve")
    pid = serve.record("stubborn")["pid"]
    members = group_members(pid)
    assert len(members) == 2 and pid in members          # the server and its child
    os.kill(pid, signal.SIGTERM)                         # ignored, as promised
    time.sleep(0.2)
    assert group_members(pid) == members
    r = serve.ok("stop", "stubborn")
    assert "stubborn: killed (still running 0.5s after SIGTERM)" in r.stderr
    assert group_members(pid) == [] and not listening(port)
    again = serve.ok("stop", "stubborn")                 # stopping what is stopped is fine
    assert "stubborn: not running" in again.stderr
    rows = {row["name"]: row for row in json.loads(serve.ok("status", "--json").stdout)}
    assert rows["stubborn"]["state"] == "stopped" and rows["stubborn"]["pid"] is None
    unknown = serve.cli("stop", "nobody")
    assert unknown.returncode == 1 and "no instance named 'nobody'" in unknown.stderr


def test_rerun_leaves_healthy_alone_and_restarts_only_the_changed_one(serve: Serve) -> None:
    pa, pb = free_port(), free_port()
    spec = {"keep": {"port": pa}, "change": {"port": pb}}
    serve.write(responder_config(spec))
    listed = serve.ok("list", "--all").stdout
    assert "serve:keep" in listed and "serve:change" in listed
    serve.ok("serve")
    first = {n: serve.record(n)["pid"] for n in spec}
    again = serve.ok("serve")
    assert "keep: running with the same config: left alone → keep" in again.stderr
    assert {n: serve.record(n)["pid"] for n in spec} == first
    spec["keep"]["server"] = "unused_key = 1"      # not in keep's command: its effective config is the same
    spec["change"]["control"] = 'env = { CHANGED = "1" }'       # another effective config for one
    serve.write(responder_config(spec))
    third = serve.ok("serve")
    assert "change: its effective config changed → restart" in third.stderr
    assert "keep: running with the same config: left alone → keep" in third.stderr
    now = {n: serve.record(n)["pid"] for n in spec}
    assert now["keep"] == first["keep"] and now["change"] != first["change"]
    assert group_members(first["change"]) == []
    actions = {i["name"]: i["action"] for i in serve.report()["instances"]}
    assert actions == {"keep": "keep", "change": "restart"}
    serve.ok("stop", "change")
    one = serve.ok("serve:change")                              # a sub-task serves one instance
    assert "change ready" in one.stderr and "keep:" not in one.stderr
    assert [i["name"] for i in serve.report()["instances"]] == ["change"]


def test_a_port_another_instance_holds_is_refused_by_serve_and_by_its_dry_run_alike(serve: Serve) -> None:
    """One port rule for both (orchestrator.port_refusal): an instance's own port is fine, another
    auto-infer instance on it is named with how to stop it."""
    port = free_port()
    serve.write(responder_config({"holder": {"port": port}}))
    serve.ok("serve")
    own = serve.ok("serve", "--dry-run", "--strict")                 # its own process holds the port
    assert "already in use" not in own.stdout, own.stdout
    serve.write(responder_config({"holder": {"port": port, "control": "enabled = false"},
                                  "other": {"port": port}}))
    said = (f"instance other: port {port} is already in use",
            "instance holder, started earlier by auto-infer, listens there: `auto-infer stop holder`")
    dry = serve.cli("serve", "--dry-run", "--strict")
    real = serve.cli("serve")
    serve.ok("stop", "holder")
    assert dry.returncode == 1 and all(s in dry.stdout for s in said), dry.stdout + dry.stderr
    assert real.returncode == 1 and all(s in real.stderr for s in said), real.stderr
    assert "Traceback" not in real.stderr + dry.stderr


def test_overrides_are_deep_merged_before_anything_else(serve: Serve) -> None:
    file_port, real_port = free_port(), free_port()
    serve.write(responder_config({"ov": {"port": file_port}}))
    overrides = json.dumps({"instance": {"ov": {"server": {"port": real_port},
                                                "control": {"env": {"FROM_OVERRIDES": "1"}}}}})
    serve.ok("serve", AUTO_INFER_SGLANG_OVERRIDES=overrides)
    assert serve.debug_env(real_port)["env"]["FROM_OVERRIDES"] == "1" and not listening(file_port)
    assert serve.report()["overrides"] is True


def test_api_key_is_sent_but_never_written_and_openai_client_talks(serve: Serve, tmp_path: Path) -> None:
    """The SGLang path (python -m <server_module> <flags>), with the responder standing in for SGLang."""
    import openai

    key, port, model_dir = "sk-test-5ecret-value-42", free_port(), tmp_path / "tiny-model"
    model_folder(model_dir)
    serve.write(f"""[master]
python_path = "{sys.executable}"
server_module = "auto_infer.demo.responder"

[instance.control]
api_key_env = "TEST_SERVE_KEY"
stop_grace = 5

[instance.server]
host = "0.0.0.0"
trust_remote_code = true

[instance.guarded.server]
model_path = "{model_dir}"
served_model_name = "guarded-model"
port = {port}
tp_size = 1
extra_args = ["--warmup", "0.5"]
""")
    missing = serve.cli("serve")
    assert missing.returncode == 1 and "api_key_env names TEST_SERVE_KEY, which is not set" in missing.stderr
    serve.ok("serve", TEST_SERVE_KEY=key)
    inst = serve.report()["instances"][0]
    assert inst["base_url"] == f"http://127.0.0.1:{port}" and inst["model_id"] == "guarded-model"
    assert inst["argv"][:3] == [sys.executable, "-m", "auto_infer.demo.responder"]
    assert inst["argv"][3:] == ["--warmup", "0.5", "--host", "0.0.0.0", "--trust-remote-code",
                                "--model-path", str(model_dir), "--served-model-name", "guarded-model",
                                "--port", str(port), "--tp-size", "1", "--api-key", "***"]
    assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 401
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
    answer = client.chat.completions.create(model="guarded-model",
                                            messages=[{"role": "user", "content": "Hi there"}])
    assert answer.choices[0].message.content == "Hello from guarded-model. You said: Hi there"
    assert [m.id for m in client.models.list().data] == ["guarded-model"]
    outputs = [serve.ok("status", "--json").stdout, serve.ok("status").stdout, serve.ok("logs").stdout,
               serve.ok("chat", TEST_SERVE_KEY=key).stdout]
    # a shell without the key (a new `docker exec`): the server is fine, only the key is missing here
    def guarded(out: str) -> dict[str, Any]:
        return next(row for row in json.loads(out) if row["name"] == "guarded")
    row = guarded(outputs[0])
    assert row["state"] == "running" and "TEST_SERVE_KEY (its api_key_env) is not set here" in row["detail"]
    other = guarded(serve.ok("status", "--json", TEST_SERVE_KEY="sk-other").stdout)
    assert other["state"] == "running" and "not the key it was started with" in other["detail"]
    assert guarded(serve.ok("status", "--json", TEST_SERVE_KEY=key).stdout)["state"] == "ready"
    keyless = serve.cli("chat")
    assert keyless.returncode == 1 and "export TEST_SERVE_KEY" in keyless.stderr, keyless.stderr
    log = Path(inst["log"]).read_text()
    assert "server_args=" in log and "'api_key': '***'" in log          # printed by the server, masked
    for path in [*serve.ws.root.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
    assert not any(key in out for out in outputs)
    serve.ok("stop")
    assert not listening(port)


def test_master_disabled_launches_nothing(serve: Serve) -> None:
    port = free_port()
    serve.write(responder_config({"off": {"port": port}}).replace("enable = true", "enable = false"))
    r = serve.ok("serve")
    assert "master.enable = false" in r.stderr and "no server is launched" in r.stderr
    assert registry.read(load(serve.env), "off") is None and not listening(port)


def test_realworld_config_is_read_unchanged(serve: Serve) -> None:
    real = realworld("sglang-glm-4.7-tp8.toml")
    if not real.exists():
        pytest.skip("shared/realworld not present")
    r = serve.cli("serve", AUTO_INFER_SGLANG_CONFIG=str(real))
    assert r.returncode == 1
    assert "master.project_dir (/hard/volume/workspace/sglang-pixi-offline) is ignored" in r.stderr
    assert "instance glm_4_7_tp8: model_path does not exist: /llm-models/GLM-4.7" in r.stderr
    assert f"{real}: [instance.glm_4_7_tp8.server] model_path" in r.stderr
    assert registry.read(load(serve.env), "glm_4_7_tp8") is None


def test_the_dry_run_says_what_serve_ignores(serve: Serve) -> None:
    """infer-dev keys auto-infer accepts and does not follow are said by the dry run as by serve."""
    port = free_port()
    text = responder_config({"fg": {"port": port, "control": "background = false"}})
    serve.write(text.replace("[master]", '[master]\nproject_dir = "/bundles/x"', 1))
    for args in (["serve", "--dry-run"], ["serve"]):
        r = serve.ok(*args)
        assert "master.project_dir (/bundles/x) is ignored" in r.stderr, r.stderr
        assert "fg: background = false (infer-dev's foreground mode) is ignored" in r.stderr, r.stderr
    plan = json.loads(serve.ok("serve", "--dry-run", "--json").stdout)
    assert plan["ignored"][0].startswith("master.project_dir (/bundles/x) is ignored"), plan
    serve.ok("stop")
