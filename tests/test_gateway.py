"""The gateway ([router]): the real sglang-router (its PyPI wheel, in the dev extra) in front of two
test responders, through the real CLI. Real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port, port_is_free
from auto_infer.core.settings import load
from auto_infer.serve import config, procs, registry
from tests.helpers import Workspace
from tests.helpers.serving import SMG, Serve, responder_config, router_table

pytestmark = pytest.mark.skipif(not SMG.exists(), reason="sglang-router is not installed (pip install -e '.[dev]')")


@pytest.fixture
def serve(installed: Workspace, tmp_path: Path) -> Any:
    config_path = tmp_path / "models.toml"
    s = Serve(installed, config_path, {**installed.env, "AUTO_INFER_SGLANG_CONFIG": str(config_path)})
    yield s
    s.cli("stop")


def ask(port: int, text: str) -> tuple[int, str]:
    r = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                      json={"model": "alpha-model", "messages": [{"role": "user", "content": text}]})
    return r.status_code, r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else r.text


def wait_for(check: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_gateway_round_robin_routes_around_a_dead_worker_and_stop_leaves_nothing(serve: Serve) -> None:
    pa, pb, gport, mport = free_port(), free_port(), free_port(), free_port()
    serve.write(responder_config({"alpha": {"port": pa}, "beta": {"port": pb}}) + router_table(gport, mport))
    r = serve.ok("serve")
    assert "router ready" in r.stderr and "router chat: answered" in r.stderr
    print("\n" + "\n".join(ln for ln in r.stderr.splitlines() if "router" in ln or "gateway flags" in ln))

    gw = serve.record("router")
    assert gw["kind"] == "gateway" and gw["state"] == "ready" and set(gw["fronts"]) == {"alpha", "beta"}
    assert (
        Path(gw["launch_record"]).exists()
        and "--worker-urls" in json.loads(Path(gw["launch_record"]).read_text())["argv"]
    )
    report = serve.report()
    assert report["ok"] and report["gateway"]["ok"] and report["gateway"]["chat"]["status"] == 200
    assert "## gateway (router): routing and answering" in (serve.ws.root / "reports" / "serve-latest.md").read_text()

    answers = [ask(gport, f"q{i}") for i in range(4)]           # round robin: both workers answer, in turn
    assert all(code == 200 for code, _ in answers)
    who = [text.split(".")[0] for _, text in answers]
    assert set(who) == {"Hello from alpha-model", "Hello from beta-model"} and who[0] != who[1], who

    rows = {row["name"]: row for row in json.loads(serve.ok("status", "--json").stdout)}
    assert rows["router"]["state"] == "ready" and rows["router"]["port"] == gport
    assert "gateway" in serve.ok("logs", "router").stdout or "router" in serve.ok("logs", "router").stdout

    alpha = serve.record("alpha")
    os.killpg(alpha["pid"], signal.SIGKILL)                     # a worker dies: requests go to the other one
    assert wait_for(lambda: not procs.group_members(alpha["pid"]))
    after = [ask(gport, f"after {i}") for i in range(4)]
    assert all(code == 200 and text.startswith("Hello from beta-model") for code, text in after), after
    assert wait_for(lambda: requests.get(f"http://127.0.0.1:{gport}/readiness", timeout=5).json()
                    .get("healthy_workers") == 1)

    serve.ok("stop")
    for name in ("router", "alpha", "beta"):
        rec = serve.record(name)
        assert not procs.group_members(rec["pid"]), f"{name} left processes"
    assert port_is_free("127.0.0.1", gport) and port_is_free("127.0.0.1", mport)


def test_serve_again_keeps_a_running_gateway(serve: Serve) -> None:
    pa, gport, mport = free_port(), free_port(), free_port()
    serve.write(responder_config({"delta": {"port": pa}}) + router_table(gport, mport))
    serve.ok("serve")
    first = serve.record("router")["pid"]
    r = serve.ok("serve")
    assert "router: running with the same config: left alone → keep" in r.stderr
    assert serve.record("router")["pid"] == first


@pytest.mark.parametrize(("extra", "key", "said"), [
    ({"policy": "fastest"}, "[router] policy", "invalid choice: 'fastest'"),
    ({"extra_args": ["--no-such-flag"]}, "[router] extra_args", "--no-such-flag"),
])
def test_gateway_flags_are_judged_by_its_own_parser_before_anything_starts(
        serve: Serve, extra: dict[str, Any], key: str, said: str) -> None:
    pa, gport, mport = free_port(), free_port(), free_port()
    table = router_table(gport, mport).replace("extra_args", "# extra_args") if "extra_args" in extra \
        else router_table(gport, mport)
    serve.write(
        responder_config({"gamma": {"port": pa}})
        + table
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    )
    r = serve.cli("serve")
    assert r.returncode == 1, r.stderr
    assert key in r.stderr and said in r.stderr and "sglang-router 0.3.2 rejects" in r.stderr
    assert registry.read(load(serve.env), "gamma") is None          # nothing was started


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text('[instance.control]\ncommand = ["x", "{port}"]\n'
                    "[instance.a.server]\nport = 31001\n[instance.b.server]\nport = 31002\n" + text)
    return path


@pytest.mark.parametrize(
    ("text", "said", "where"),
    [
        ("[router]\nport = 31002\n", "the gateway's port 31002 is also instance b's port", "[router] port"),
        (
            "[router]\nprometheus_port = 31001\n",
            "prometheus_port 31001 is also instance a's port",
            "[router] prometheus_port",
        ),
        (
            "[router]\nport = 9000\nprometheus_port = 9000\n",
            "port and prometheus_port are both 9000",
            "[router] prometheus_port",
        ),
        ('[router]\ninstances = ["a", "c"]\n', "'c', which is not an enabled instance", "[router] instances"),
        ("[router]\nport = 0\n", "is not a TCP port", "[router] port"),
        ("[router]\npolicy = 3\n", "wrong type", "[router] policy"),
        ("[router]\nbogus = 1\n", "unknown key 'bogus'", "[router] bogus"),
        ("[router]\n[instance.router.server]\nport = 31003\n", "named 'router'", "[instance.router]"),
    ],
)
def test_router_table_errors_name_the_key(tmp_path: Path, text: str, said: str, where: str) -> None:
    with pytest.raises(UserError) as err:
        config.load(load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)}), write_config(tmp_path, text))
    assert said in str(err.value) and where in str(err.value), str(err.value)


def test_router_defaults(tmp_path: Path) -> None:
    cfg = config.load(load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)}), write_config(tmp_path, "[router]\n"))
    assert cfg.router is not None and cfg.router.policy == "round_robin" and cfg.router.port == 30080
    from auto_infer.serve import gateway
    assert gateway.fronted(cfg) == ("a", "b")
    assert gateway.flags(cfg.router, ["http://127.0.0.1:31001"])[:6] == [
        "--host", "127.0.0.1", "--port", "30080", "--worker-urls", "http://127.0.0.1:31001"]


def test_an_environment_without_the_gateway_is_refused_before_anything_starts(serve: Serve) -> None:
    pa, gport, mport = free_port(), free_port(), free_port()
    table = "\n".join(line for line in router_table(gport, mport).splitlines() if not line.startswith("command"))
    serve.write(responder_config({"eps": {"port": pa}}) + table + "\n")
    r = serve.cli("serve")
    assert r.returncode == 1, r.stderr
    assert "the environment has no gateway" in r.stderr and "sglang_router.launch_router" in r.stderr, r.stderr
    assert "[router]" in r.stderr and "sglang-router to the template" in r.stderr
    assert registry.read(load(serve.env), "eps") is None


def test_the_dry_run_shows_the_gateway_and_flags_its_busy_port(serve: Serve) -> None:
    """The gateway serve would start: its argv (the real parser judged its flags) and a port something
    else listens on, which serve refuses: a ⚠ here, exit 1 with --strict."""
    pa, gport, mport = free_port(), free_port(), free_port()
    serve.write(responder_config({"zeta": {"port": pa}}) + router_table(gport, mport))
    plan = json.loads(serve.ok("serve", "--dry-run", "--json").stdout)
    gw = plan["gateway"]
    assert gw["fronts"] == ["zeta"] and gw["problems"] == [], gw
    assert gw["argv"][gw["argv"].index("--worker-urls") + 1] == f"http://127.0.0.1:{pa}"
    assert gw["url"] == f"http://127.0.0.1:{gport}"
    with socket.socket() as held:
        held.bind(("127.0.0.1", mport))
        held.listen()
        r = serve.cli("serve", "--dry-run")
        assert r.returncode == 0, r.stderr
        text = r.stdout + r.stderr
        assert "[router] gateway" in text and f"⚠ the gateway's prometheus_port {mport} is already in use" in text
        assert serve.cli("serve", "--dry-run", "--strict").returncode == 1
        refused = serve.cli("serve")
    assert refused.returncode == 1 and f"the gateway's prometheus_port {mport} is already in use" in refused.stderr
    assert registry.read(load(serve.env), "zeta") is None
