"""warm's download layer on real sockets: a stalled network ends with a clear error, mirrors
serve the lock's URLs, transient failures are retried, a wrong hash is never accepted."""

from __future__ import annotations

import base64
import functools
import http.client
import json
import shutil
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tomlkit

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.core.settings import load
from auto_infer.demo import mirror
from auto_infer.install import mirrors
from auto_infer.install.backends import pixi
from tests.conftest import Built, Workspace
from tests.helpers import clean_env, run_cli

SECRET = "s3cr3t-pw"
FAST = {"AUTO_INFER_NET_TIMEOUT": "1", "AUTO_INFER_NET_RETRIES": "1", "AUTO_INFER_NET_RETRY_DELAY": "0.05",
        "AUTO_INFER_NET_DEADLINE": "60", "AUTO_INFER_NET_CONNECTIONS": "2"}
# infer-dev's real rattler config (dev-dockers host-scripts/rattler-config.tuna.toml), verbatim
TUNA = '''# Rattler config (used by pixi-pack -c) with Tsinghua TUNA mirrors.

[mirrors]
"https://conda.anaconda.org/conda-forge" = [
  "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/"
]
'''


@contextmanager
def stalled_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """Accepts every connection and never answers (a dead proxy / stalled network)."""
    srv = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield srv.getsockname()[1], held
    finally:
        srv.close()
        for conn in held:
            conn.close()


class _Flaky(SimpleHTTPRequestHandler):
    """Serves files; the first requests fail as the server's ``plan`` says."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        with self.server.plan_lock:  # type: ignore[attr-defined]
            mode = self.server.plan.pop(0) if self.server.plan else None  # type: ignore[attr-defined]
        if mode == "503":
            self.send_error(503, "try later")
        elif mode == "reset":                # RST instead of a response
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif mode == "truncated":            # the full Content-Length, half the body
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        else:
            super().do_GET()


@contextmanager
def flaky_server(root: Path, plan: list[str]) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_Flaky, directory=str(root)))
    srv.plan, srv.plan_lock = list(plan), threading.Lock()  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def mirror_map(path: Path, original: str, *targets: str) -> Path:
    doc = tomlkit.document()
    doc["mirrors"] = {original: list(targets)}
    path.write_text(tomlkit.dumps(doc))
    return path


def warm_env(workspace: Workspace, built: Built, *mirror_urls: str, **extra: str) -> dict[str, str]:
    """The workspace's env; the lock's host (nothing listens there in these tests) mapped to ``mirror_urls``."""
    env = {**workspace.env, **FAST, **extra}
    if mirror_urls:
        path = mirror_map(workspace.root.parent / "mirrors.toml", f"http://127.0.0.1:{built.port}", *mirror_urls)
        env["AUTO_INFER_MIRRORS"] = str(path)
    return env


def no_part_files(root: Path) -> bool:
    return not [p for p in root.rglob("*.part")]


# ---- stalled network ------------------------------------------------------------------------

@pytest.mark.parametrize("limit", [{}, {"AUTO_INFER_NET_TIMEOUT": "60", "AUTO_INFER_NET_DEADLINE": "3"}],
                         ids=["read-timeout", "total-deadline"])
def test_stalled_proxy_ends_warm_naming_what_was_not_fetched(workspace: Workspace, built_channel: Built,
                                                             limit: dict[str, str]) -> None:
    with stalled_server() as (port, held):
        proxy = f"http://alice:{SECRET}@127.0.0.1:{port}"
        env = warm_env(workspace, built_channel, HTTP_PROXY=proxy, http_proxy=proxy, **limit)
        r = run_cli(["warm"], env, timeout=120)        # the safety net: warm must end by itself
        assert held, "the downloads never reached the stalled proxy"
    assert r.returncode == 1, r.stderr
    assert "4 of 4 artifacts were not fetched" in r.stderr, r.stderr
    for name in ("hello-1.0-0.tar.bz2", "demo-data-2.0-0.tar.bz2", "demo_extras-0.3-py3-none-any.whl"):
        assert name in r.stderr
    assert f"proxy: http://alice:***@127.0.0.1:{port}" in r.stderr, r.stderr
    assert ("deadline" if limit else "no data within the read timeout") in r.stderr
    assert "Traceback" not in r.stderr and SECRET not in r.stderr + r.stdout
    for path in workspace.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert no_part_files(workspace.root)


def test_a_proxy_without_a_scheme_is_masked_in_the_error_and_the_manifest(workspace: Workspace, built_channel: Built,
                                                                          online: mirror.Mirror) -> None:
    """``user:pw@host:port`` (no ``http://``) is still a proxy with a password: masked the same way."""
    proxy = f"alice:{SECRET}@127.0.0.1:{free_port()}"
    env = warm_env(workspace, built_channel, HTTP_PROXY=proxy, http_proxy=proxy, HTTPS_PROXY=proxy)
    bad = run_cli(["warm"], env)                     # nothing listens at that proxy: every fetch fails
    assert bad.returncode == 1, bad.stderr
    assert f"proxy: alice:***@127.0.0.1:{proxy.rsplit(':', 1)[1]}" in bad.stderr, bad.stderr
    good = run_cli(["warm"], dict(env, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"))
    assert good.returncode == 0, good.stderr
    used = json.loads(workspace.manifest.read_text())["proxies_used"]
    assert used["HTTPS_PROXY"] == proxy.replace(SECRET, "***"), used
    assert SECRET not in bad.stdout + bad.stderr + good.stdout + good.stderr
    for path in workspace.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


class _Forwarding(BaseHTTPRequestHandler):
    """A plain HTTP forward proxy (absolute-URI requests): forwards GET and HEAD, and records each
    request's URL and Proxy-Authorization header on the server."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _forward(self) -> None:
        url = urlsplit(self.path)
        self.server.seen.append((self.path, self.headers.get("Proxy-Authorization")))  # type: ignore[attr-defined]
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("range", "accept-encoding")}
        conn.request(self.command, url.path + (f"?{url.query}" if url.query else ""), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding"):
                self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        conn.close()

    do_GET = do_HEAD = _forward


@contextmanager
def forwarding_proxy() -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Forwarding)
    srv.seen = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1], srv.seen  # type: ignore[attr-defined]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("user", ["", f"alice:{SECRET}@"], ids=["host-port", "user-password"])
def test_a_proxy_without_a_scheme_is_used_as_curl_and_pixi_use_it(workspace: Workspace, built_channel: Built,
                                                                 online: mirror.Mirror, user: str) -> None:
    """``HTTP_PROXY=host:port`` (no ``http://``, as many Dockerfiles write it) is an http:// proxy for
    curl, pixi and uv; requests alone refuses it. warm downloads through it, with the credentials."""
    with forwarding_proxy() as (port, seen):
        proxy = f"{user}localhost:{port}"        # a host name: requests would read "localhost" as a scheme
        env = warm_env(workspace, built_channel, HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY="", no_proxy="")
        r = run_cli(["warm"], env)
    assert r.returncode == 0, r.stderr
    lock_host = f"http://127.0.0.1:{built_channel.port}/"
    fetched = [url for url, _ in seen]
    assert any(url.startswith(lock_host) and url.endswith(".tar.bz2") for url in fetched), fetched
    assert any(url.endswith(".whl") for url in fetched), fetched
    want = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode() if user else None
    assert {auth for _, auth in seen} == {want}, seen
    assert SECRET not in r.stdout + r.stderr


def test_dry_run_with_sizes_nobody_can_tell_says_at_least(workspace: Workspace) -> None:
    """Nothing answers at the lock's host: the wheel (pixi.lock has no size for it) is of unknown size,
    so the totals are lower bounds and the space check says what it cannot judge; it does not refuse."""
    r = run_cli(["warm", "--dry-run"], {**workspace.env, **FAST})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("warm will fetch at least ") and "; +1 file of unknown size):" in lines[0], r.stdout
    assert "4 files, at least " in r.stdout and "(+1 of unknown size)" in r.stdout, r.stdout
    volume = next(ln for ln in lines if ln.strip().startswith("volume "))
    assert "needs at least " in volume and "cannot judge the 1 file of unknown size" in volume, volume


# ---- mirrors ----------------------------------------------------------------------------------

def test_mirror_map_serves_an_unreachable_channel(workspace: Workspace, built_channel: Built) -> None:
    with mirror.Mirror(built_channel.channel.root) as m:
        r = run_cli(["warm"], warm_env(workspace, built_channel, f"{m.url}/"))
        assert r.returncode == 0, r.stderr
        assert len(m.gets) == 4
    manifest = json.loads(workspace.manifest.read_text())
    for art in manifest["artifacts"]:
        assert art["url"].startswith(f"http://127.0.0.1:{built_channel.port}/")
        assert art["served_from"].startswith(f"{m.url}/"), art
    archives = workspace.cache_root / "conda" / "archives"
    assert (archives / "linux-64" / "hello-1.0-0.tar.bz2").is_file()
    assert (archives / "noarch" / "demo-data-2.0-0.tar.bz2").is_file()
    # a second warm downloads nothing and keeps what the manifest says about the source
    with mirror.Mirror(built_channel.channel.root, m.port) as again:
        r = run_cli(["warm"], warm_env(workspace, built_channel, f"{m.url}/"))
        assert r.returncode == 0, r.stderr
        assert again.requests == []
    assert json.loads(workspace.manifest.read_text())["artifacts"] == manifest["artifacts"]


def test_mirrors_are_tried_in_order_and_failures_retried(workspace: Workspace, built_channel: Built) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with flaky_server(built_channel.channel.root, ["503", "reset", "truncated"]) as flaky:
        env = warm_env(workspace, built_channel, dead, flaky, AUTO_INFER_NET_RETRIES="3",
                       AUTO_INFER_NET_CONNECTIONS="1")
        r = run_cli(["warm"], env)
    assert r.returncode == 0, r.stderr
    retries = [ln for ln in r.stderr.splitlines() if "↻ retry" in ln]
    assert len(retries) == 3, r.stderr
    assert "HTTP 503" in retries[0] and "truncated" in retries[2] and "reset" in retries[1].lower(), retries
    assert "trying the next mirror" in r.stderr                 # the dead mirror, then the flaky one
    served = {a["served_from"] for a in json.loads(workspace.manifest.read_text())["artifacts"]}
    assert all(s.startswith(f"{flaky}/") for s in served), served


def test_a_wrong_hash_is_never_accepted(workspace: Workspace, built_channel: Built, tmp_path: Path) -> None:
    bad_root = tmp_path / "bad-mirror"
    shutil.copytree(built_channel.channel.root, bad_root)
    hello = bad_root / "channel" / "linux-64" / "hello-1.0-0.tar.bz2"
    hello.write_bytes((bad_root / "channel" / "noarch" / "demo-data-2.0-0.tar.bz2").read_bytes())
    with mirror.Mirror(bad_root) as m:
        r = run_cli(["warm"], warm_env(workspace, built_channel, m.url, AUTO_INFER_NET_RETRIES="2"))
        asked = [p for p in m.requests if p.endswith("hello-1.0-0.tar.bz2")]
    assert r.returncode == 1, r.stderr
    assert "1 of 4 artifacts were not fetched" in r.stderr and "linux-64/hello-1.0-0.tar.bz2" in r.stderr
    assert "sha256 mismatch" in r.stderr and "Traceback" not in r.stderr
    assert len(asked) == 1                                       # not retried
    assert not (workspace.cache_root / "conda" / "archives" / "linux-64" / "hello-1.0-0.tar.bz2").exists()
    assert no_part_files(workspace.root)
    assert not workspace.manifest.exists()


# ---- the mirror file ----------------------------------------------------------------------------

def test_the_infer_dev_rattler_config_parses(tmp_path: Path) -> None:
    path = tmp_path / "rattler-config.tuna.toml"
    path.write_text(TUNA)
    m = mirrors.load(path)
    url = "https://conda.anaconda.org/conda-forge/linux-64/python-3.12.12-h5.conda"
    assert m.candidates(url) == [
        "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/linux-64/python-3.12.12-h5.conda"]
    assert m.candidates("https://pypi.org/simple/x/") == ["https://pypi.org/simple/x/"]


def test_longest_prefix_wins_and_the_original_only_when_listed(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[mirrors]\n"https://h/a" = ["https://m1/a"]\n'
                    '"https://h/a/label" = ["https://m2/x", "https://h/a/label"]\n')
    m = mirrors.load(path)
    assert m.candidates("https://h/a/label/f.conda") == ["https://m2/x/f.conda", "https://h/a/label/f.conda"]
    assert m.candidates("https://h/a/f.conda") == ["https://m1/a/f.conda"]


@pytest.mark.parametrize(("text", "words"), [
    ('[mirrors]\n"https://h/a" = "https://m/a"\n', ["non-empty list", "'https://h/a'"]),
    ('[mirrors]\n"https://h/a" = ["ftp://m/a"]\n', ["not an http(s)/file URL", "'https://h/a'"]),
    ("[mirrors\n", ["not valid TOML"]),
    ("[other]\nx = 1\n", ["no [mirrors] table"]),
])
def test_a_malformed_mirror_file_names_file_and_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        mirrors.load(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_warm_with_a_malformed_mirror_file_exits_1(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[mirrors]\n"https://h/a" = 3\n')
    r = run_cli(["warm"], {**workspace.env, "AUTO_INFER_MIRRORS": str(path)})
    assert r.returncode == 1 and str(path) in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- the pixi backend's side --------------------------------------------------------------------

def test_pixi_gets_the_mirror_map_and_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "rattler-config.toml"
    path.write_text(TUNA)
    s = load(clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_MIRRORS": str(path),
                        "AUTO_INFER_NET_TIMEOUT": "7", "AUTO_INFER_NET_RETRIES": "5",
                        "AUTO_INFER_NET_CONNECTIONS": "3"}))
    written = pixi.write_config(s)
    assert written == s.project_dir / ".pixi" / "config.toml"
    config = tomlkit.parse(written.read_text()).unwrap()
    assert config["mirrors"] == tomlkit.parse(TUNA).unwrap()["mirrors"]
    assert config["concurrency"] == {"downloads": 3}
    env = pixi.environment(s, offline=False)
    assert (env["UV_HTTP_TIMEOUT"], env["UV_HTTP_RETRIES"], env["UV_CONCURRENT_DOWNLOADS"]) == ("7", "5", "3")
    written.write_text("[mirrors]\n# the user's own\n")              # not ours: left alone
    assert pixi.write_config(s) is None and "the user's own" in written.read_text()
