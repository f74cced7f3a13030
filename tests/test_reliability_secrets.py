"""Secrets never written down: sentinel values in the proxy credentials and in the API key
variable, the whole pipeline run (warm through boot, serve, chat, status, logs, stop, and a warm
that fails through the proxy), then every file under the workspace and the cache root -- manifests,
logs, reports, doit's sqlite state, launch records -- and every line printed are searched, byte
for byte, for the sentinels (raw, URL-quoted, and as HTTP Basic credentials): zero hits."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.demo import mirror
from tests.helpers import model_folder, run_cli
from tests.reliability_tools import (
    CountingListener,
    find_secrets,
    no_traceback,
    proxy_env,
    record,
    secret_forms,
    secret_words,
    workspace_env,
)

PROXY_USER = "proxyuser"


def test_no_secret_is_written_anywhere(built_channel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy_secret, api_secret = secret_words()
    template = tmp_path / "template"
    shutil.copytree(built_channel.template, template)
    model = model_folder(tmp_path / "tiny-model")
    port = free_port()
    config = tmp_path / "models.toml"
    config.write_text(f"""[master]
python_path = "{sys.executable}"
server_module = "auto_infer.demo.responder"

[instance.control]
api_key_env = "RELIABILITY_API_KEY"
stop_grace = 5
ready_timeout = 60

[instance.keyed.server]
model_path = "{model}"
served_model_name = "keyed-model"
host = "127.0.0.1"
port = {port}
""")
    outputs: list[str] = []
    with CountingListener() as proxy:
        env = workspace_env(tmp_path / "ws", template, AUTO_INFER_SGLANG_CONFIG=str(config),
                            RELIABILITY_API_KEY=api_secret, AUTO_INFER_SGLANG_ON_BOOT="1",
                            **proxy_env(proxy.proxy_url(PROXY_USER, proxy_secret), "127.0.0.1,localhost"))
        steps = [["warm"], ["boot"], ["chat"], ["status", "--json"], ["logs"], ["env"], ["stop"]]
        failed = []
        try:
            with mirror.Mirror(built_channel.channel.root, built_channel.port):
                for step in steps:
                    r = run_cli(step, env)
                    outputs += [r.stdout, r.stderr]
                    if r.returncode != 0 or not no_traceback(r.stderr):
                        failed.append(f"{' '.join(step)}: exit {r.returncode}: {r.stderr[-400:]}")
        finally:
            run_cli(["stop"], env)
        through_proxy = proxy.count
        # a warm that fails through the proxy (no NO_PROXY, empty cache): its error must not carry them
        bad = run_cli(["warm"], dict(env, NO_PROXY="", no_proxy="",
                                     AUTO_INFER_SGLANG_CACHE_ROOT=str(tmp_path / "ws" / "cache-2")))
        outputs += [bad.stdout, bad.stderr]
    needles = secret_forms(PROXY_USER, proxy_secret) + secret_forms("", api_secret)
    roots = [tmp_path / "ws", Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"]), template, model]
    searched, hits = find_secrets(roots, needles)
    printed = [n.decode() for n in needles for out in outputs if n.decode() in out]
    record("secrets", test="test_reliability_secrets.py",
           what="sentinels in HTTP(S)_PROXY credentials and the API key variable; warm (with template), boot "
                "(install, check, serve), chat, status, logs, env, stop, and a warm failing through "
                "the proxy; every file under workspace + cache root searched (raw, URL-quoted, Basic auth "
                "forms) and every line printed: files searched = tried, files without a hit = ended well",
           tried=searched, ok=searched - len({h.split(': ')[0] for h in hits}), hits=hits[:5],
           printed_hits=len(printed), steps_failed=len(failed), proxy_connections=through_proxy)
    assert not failed, failed
    assert any("keyed: Hello from keyed-model" in out for out in outputs)     # the key did reach the server
    assert bad.returncode == 1 and no_traceback(bad.stderr), bad.stderr
    assert not hits, hits
    assert not printed, printed
    assert through_proxy == 0       # NO_PROXY covered the mirror: everything went direct
