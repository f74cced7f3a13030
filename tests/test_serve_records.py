"""Regression tests for issue 10 points 7 and 8a, through the real CLI and real servers.

7: the launch record keeps only the values auto-infer and the config set, and of the caller's
   environment the names: a value in a variable of an innocent name reaches no file we write.
8a: a `stop` while `serve` is still following the instance leaves its record "stopped" (serve's
   thread sees the process end and must not overwrite that with "failed").
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.serve import registry
from tests.helpers import CLI
from tests.helpers.serving import Serve, listening, responder_config

SENTINEL = "sentinel-XYZ-4f1c"


def test_a_callers_variable_value_reaches_no_record_report_or_log(serve: Serve) -> None:  # noqa: F811
    port = free_port()
    serve.write(responder_config({"quiet": {"port": port}}))
    serve.ok("serve", MY_NOTE=SENTINEL)
    seen = serve.debug_env(port)
    assert seen["env"]["MY_NOTE"] == SENTINEL                     # the server inherits it ...
    launch_record = json.loads(Path(serve.record("quiet")["launch_record"]).read_text())
    assert "MY_NOTE" in launch_record["env"]["inherited_names"]    # ... the record names it ...
    outputs = [serve.ok("status", "--json").stdout, serve.ok("logs", "quiet").stdout]
    written = [p for p in serve.ws.root.rglob("*") if p.is_file() and p.suffix != ".sqlite"]
    assert any(p.name == "serve-latest.json" for p in written) and any(p.suffix == ".log" for p in written)
    for path in written:                                            # ... and no file holds its value
        assert SENTINEL not in path.read_text(errors="replace"), path
    assert not any(SENTINEL in out for out in outputs)
    serve.ok("stop")


def test_stop_while_serve_is_following_leaves_the_record_stopped(serve: Serve) -> None:  # noqa: F811
    port = free_port()
    serve.write(responder_config({"slowpoke": {"port": port, "flags": ["--warmup", "120"]}}))
    following = subprocess.Popen([*CLI, "serve"], env=serve.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, stdin=subprocess.DEVNULL, cwd="/")
    try:
        deadline = time.monotonic() + 120
        while not listening(port):                                   # up, warming up, serve waiting
            assert following.poll() is None and time.monotonic() < deadline, following.communicate()
            time.sleep(0.2)
        assert registry.read_or_empty(load(serve.env), "slowpoke").state == "starting"
        serve.ok("stop", "slowpoke")
        _, err = following.communicate(timeout=120)
    finally:
        if following.poll() is None:
            following.kill()
    assert following.returncode == 1 and "slowpoke" in err          # serve reports it did not get ready
    rec = serve.record("slowpoke")
    assert rec["state"] == "stopped", rec
    assert "stopped" in serve.ok("status", "--json").stdout


PAT = "ghp_" + "Q" * 12 + "pat7a1b2c3d4e5f6"                 # a GitHub PAT, by its name and its shape
DB_PW = "dbpw-9e8d7c6b"


def test_secrets_by_value_reach_no_record_report_log_or_dry_run(serve: Serve) -> None:  # noqa: F811
    """control.env secrets by name (GITHUB_PAT, *_TOKEN, *PASSWORD*) and by value (a URL with
    credentials under an innocent name): the server gets them; nothing we write or print holds them."""
    port = free_port()
    env = (f'env = {{ GITHUB_PAT = "{PAT}", DB_URL = "postgres://app:{DB_PW}@db:5432/x", '
           f'MY_SERVICE_TOKEN = "tok-{DB_PW}", MYSQL_ROOT_PASSWORD = "root-{DB_PW}", NOTE = "plain-value" }}')
    serve.write(responder_config({"keyed": {"port": port, "control": env}}))
    serve.ok("serve")
    seen = serve.debug_env(port)["env"]
    assert seen["GITHUB_PAT"] == PAT and DB_PW in seen["DB_URL"]           # the server inherits them ...
    record = json.loads(Path(serve.record("keyed")["launch_record"]).read_text())
    assert record["env"]["set"]["NOTE"] == "plain-value"                   # ... plain values stay readable ...
    assert record["env"]["set"]["DB_URL"] == "postgres://app:***@db:5432/x"
    outputs = [serve.ok("status", "--json").stdout, serve.ok("logs", "keyed").stdout,
               serve.ok("serve", "--dry-run").stdout, serve.ok("serve", "--dry-run", "--json").stdout]
    written = [p for p in serve.ws.root.rglob("*") if p.is_file() and p.suffix != ".sqlite"]
    assert any(p.name == "serve-latest.json" for p in written) and any(p.name.endswith(".launch.json") for p in written)
    for secret in (PAT, DB_PW):                                              # ... and nothing else holds them
        assert not [p for p in written if secret in p.read_text(errors="replace")], secret
        assert not any(secret in out for out in outputs), secret
    serve.ok("stop")
