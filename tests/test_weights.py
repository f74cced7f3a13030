"""Model weights in the offline contract: warm fetches, install and serve audit, servers stay offline.

The Hub is auto_infer/demo/fakehub.py on 127.0.0.1, talked to by the real huggingface_hub client
(HF_ENDPOINT); the packages come from the test channel's mirror. Offline steps run in `unshare -n`.
The server is the test responder through the SGLang path (python -m <server_module> <flags>): its
/debug/env, read inside its namespace, shows its environment and the --model-path serve gave it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auto_infer.core import settings
from auto_infer.core.net import free_port
from auto_infer.demo import fakehub, mirror
from auto_infer.serve import actions, config, registry
from auto_infer.weights import audit, fetch
from tests.conftest import Built, Workspace, needs_netns
from tests.helpers import clean_env, run_cli

TOKEN = "hf_SENTINEL_t0ken_never_written_9f3a"
REPO = "org/tiny"


@dataclass
class HubWorkspace:
    root: Path
    hub_root: Path
    folder: Path
    env: dict[str, str]
    port: int
    folder_port: int

    def cli(self, *args: str, net: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), {**self.env, **extra}, net=net, timeout=300)

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads((self.root / ".cache" / "sglang-infer" / "cache-manifest.json").read_text()))

    @property
    def hub_cache(self) -> Path:
        return self.root / ".cache" / "sglang-infer" / "huggingface" / "hub"

    def snapshot(self) -> Path:
        [entry] = [m for m in self.manifest["models"] if m["source"] == "hub"]
        return self.hub_cache / entry["snapshot"]

    def started(self) -> dict[str, dict[str, Any]]:
        return registry.all_records(settings.load(self.env))


def make_repo(root: Path) -> None:
    """A Hub-style repo: config, tokenizer, safetensors, plus the .bin duplicate and original/ to skip."""
    repo = root / REPO
    (repo / "original").mkdir(parents=True)
    (repo / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}\n')
    (repo / "tokenizer.json").write_text('{"version": "1.0"}\n')
    (repo / "model.safetensors").write_bytes(os.urandom(6000))
    (repo / "pytorch_model.bin").write_bytes(os.urandom(6000))
    (repo / "original" / "consolidated.00.pth").write_bytes(os.urandom(3000))


def write_config(path: Path, port: int, folder: Path, folder_port: int) -> None:
    path.write_text(f"""[master]
python_path = "{sys.executable}"
server_module = "auto_infer.demo.responder"

[instance.control]
ready_timeout = 60
gpu_ids = "none"
stop_grace = 5

[instance.server]
host = "127.0.0.1"

[instance.tiny.model]
repo = "{REPO}"
revision = "main"

[instance.tiny.server]
port = {port}
served_model_name = "tiny"

[instance.local.model]
path = "{folder}"

[instance.local.server]
port = {folder_port}
served_model_name = "local"
""")


@pytest.fixture(scope="module")
def hubws(tmp_path_factory: pytest.TempPathFactory, built_channel: Built) -> HubWorkspace:
    """One workspace warmed once: packages from the mirror, weights from the fake hub (with HF_TOKEN)."""
    base = tmp_path_factory.mktemp("weights")
    template, root, hub_root, folder = base / "template", base / "ws", base / "hub", base / "shared-disk" / "m"
    shutil.copytree(built_channel.template, template)
    make_repo(hub_root)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    (folder / "model.safetensors").write_bytes(os.urandom(4000))
    port, folder_port = free_port(), free_port()
    write_config(base / "models.toml", port, folder, folder_port)
    env = clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(root), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_PROJECT_DIR": str(root / "sglang-infer"),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(root / ".cache" / "sglang-infer"),
        "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_CHECK_MODULES": "demo_extras",
        "AUTO_INFER_SGLANG_CONFIG": str(base / "models.toml"), "HOME": str(base / "home")})
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    ws = HubWorkspace(root, hub_root, folder, env, port, folder_port)
    with mirror.Mirror(built_channel.channel.root, built_channel.port), fakehub.FakeHub(hub_root) as hub:
        r = ws.cli("warm", HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN)
        assert r.returncode == 0, r.stderr
        calls = [c for c in hub.requests if c["path"].startswith(("/api/models/", f"/{REPO}/"))]
    assert calls and all(c["authorization"] == f"Bearer {TOKEN}" for c in calls), calls   # the token went out
    return ws


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_warm_records_the_resolved_commit_and_every_file(hubws: HubWorkspace) -> None:
    entries = {m["source"]: m for m in hubws.manifest["models"]}
    hub = entries["hub"]
    expected = fakehub.read_repo(hubws.hub_root, REPO)
    assert expected is not None
    assert (hub["repo"], hub["revision"], hub["commit"]) == (REPO, "main", expected["sha"])
    files = {f["path"]: f for f in hub["files"]}
    assert sorted(files) == ["config.json", "model.safetensors", "tokenizer.json"]   # no .bin, no original/
    for name, f in files.items():
        src = hubws.hub_root / REPO / name
        assert (f["size"], f["sha256"]) == (src.stat().st_size, sha256(src)), name
    assert files["model.safetensors"]["lfs"] and not files["config.json"]["lfs"]
    assert hub["total_size"] == sum(f["size"] for f in files.values())
    assert hubws.snapshot() == hubws.hub_cache / f"models--org--tiny/snapshots/{expected['sha']}"
    assert sha256(hubws.snapshot() / "model.safetensors") == files["model.safetensors"]["sha256"]
    folder = entries["folder"]
    assert folder["path"] == str(hubws.folder) and folder["total_size"] == 4000 + len('{"model_type": "llama"}\n')


@needs_netns
def test_offline_serve_passes_the_snapshot_and_keeps_servers_offline(hubws: HubWorkspace) -> None:
    r = hubws.cli("serve", net=False)
    try:
        assert r.returncode == 0, r.stderr
        assert f"weights {REPO}@" in r.stderr and "every file present" in r.stderr
        recs = hubws.started()
        seen = {name: inside_env(recs[name].pid, port) for name, port in
                (("tiny", hubws.port), ("local", hubws.folder_port))}
        for name, env in seen.items():
            assert env["env"]["HF_HUB_OFFLINE"] == "1" and env["env"]["TRANSFORMERS_OFFLINE"] == "1", name
            assert "HF_TOKEN" not in env["env"]
        tiny_argv = seen["tiny"]["argv"]
        assert tiny_argv[tiny_argv.index("--model-path") + 1] == str(hubws.snapshot())
        local_argv = seen["local"]["argv"]
        assert local_argv[local_argv.index("--model-path") + 1] == str(hubws.folder)
        rows = {row["name"]: row for row in json.loads(hubws.cli("status", "--json").stdout)}
        [commit] = [m["commit"] for m in hubws.manifest["models"] if m["source"] == "hub"]
        assert rows["tiny"]["weights"].startswith(f"{REPO}@{commit[:12]} (")
        assert rows["local"]["weights"].startswith(str(hubws.folder))
        report = json.loads((hubws.root / "reports" / "serve-latest.json").read_text())
        weights = {i["name"]: i["weights"] for i in report["instances"]}
        assert weights["tiny"]["commit"] == commit and weights["tiny"]["source"] == "hub"
    finally:
        actions.stop(settings.load(hubws.env), None)


def inside_env(pid: int, port: int) -> dict[str, Any]:
    """GET the responder's /debug/env from inside its own network namespace (unshare -n put it there)."""
    code = ("import json, urllib.request; print(urllib.request.urlopen("
            f"'http://127.0.0.1:{port}/debug/env', timeout=5).read().decode())")
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=30, check=True)
    return dict(json.loads(out.stdout))


@needs_netns
@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_damaged_weight_file_is_refused_before_any_server_starts(hubws: HubWorkspace, damage: str) -> None:
    link = hubws.snapshot() / "model.safetensors"
    blob = link.resolve()
    if damage == "deleted":
        blob.unlink()
    else:
        with open(blob, "r+b") as fh:
            fh.truncate(1000)
    before = {n: r.spawned_at for n, r in hubws.started().items()}
    for step in ("install", "serve"):
        r = hubws.cli(step, net=False)
        assert r.returncode == 1, r.stderr
        assert f"instance tiny: the weights of {REPO}@main" in r.stderr and "model.safetensors" in r.stderr
        assert ("is missing" if damage == "deleted" else "has 1000 bytes, not 6000") in r.stderr, r.stderr
        assert "auto-infer warm" in r.stderr and "Traceback" not in r.stderr
    assert {n: r.spawned_at for n, r in hubws.started().items()} == before      # nothing started
    with fakehub.FakeHub(hubws.hub_root) as hub:                 # warm repairs it: fetched once more
        r = hubws.cli("warm", HF_ENDPOINT=hub.url)
        assert r.returncode == 0, r.stderr
    assert sha256(link) == sha256(hubws.hub_root / REPO / "model.safetensors")


@needs_netns
def test_verify_finds_a_same_size_change_that_sizes_miss(hubws: HubWorkspace) -> None:
    blob = (hubws.snapshot() / "tokenizer.json").resolve()
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"1.0", b"2.0"))
    try:
        assert hubws.cli("install", net=False).returncode == 0
        for step in ("install", "serve"):
            r = hubws.cli(step, "--verify", net=False)
            assert r.returncode == 1 and "tokenizer.json has another sha256" in r.stderr, r.stderr
    finally:
        blob.write_bytes(original)


def test_a_folder_source_needs_config_and_weights(hubws: HubWorkspace, tmp_path: Path) -> None:
    (hubws.folder / "config.json").rename(tmp_path / "config.json")
    before = {n: r.spawned_at for n, r in hubws.started().items()}
    try:
        r = hubws.cli("serve")
        assert r.returncode == 1 and f"instance local: the weights of {hubws.folder}" in r.stderr, r.stderr
        assert "config.json is missing" in r.stderr
        assert {n: r.spawned_at for n, r in hubws.started().items()} == before      # nothing started
    finally:
        (tmp_path / "config.json").rename(hubws.folder / "config.json")
    (gguf := tmp_path / "gguf").mkdir()
    (gguf / "m.gguf").write_bytes(b"GGUF" + bytes(100))
    assert audit.layout_problem(gguf) is None                  # a GGUF file carries its own config
    (gguf / "m.gguf").unlink()
    assert audit.layout_problem(gguf) is not None and "no weight files" in str(audit.layout_problem(gguf))


def test_the_token_is_in_no_file(hubws: HubWorkspace) -> None:
    leaks = [p for p in hubws.root.rglob("*") if p.is_file() and not p.is_symlink()
             and TOKEN.encode() in p.read_bytes()]
    assert leaks == []


# ---------------------------------------------------------------- config and client errors
@pytest.mark.parametrize(("model", "server", "says"), [
    ('repo = "not a repo"', "", "is not a Hub repo id"),
    ('repo = "org/x"\npath = "/m"', "", "a hub source takes repo"),
    ('path = "/m"\nrevision = "main"', "", "a folder source takes path only"),
    ('repo = "org/x"\nweights = 1', "", "unknown key 'weights'"),
    ('allow_patterns = ["*.json"]', "", "neither where the weights come from"),
    ('repo = "org/x"\nallow_patterns = "*.json"', "", "allow_patterns has the wrong type"),
    ('repo = "org/x"', 'model_path = "/m"', "sets both model_path and [instance.a.model]"),
])
def test_model_table_errors_name_the_key(tmp_path: Path, model: str, server: str, says: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f"[instance.a.model]\n{model}\n\n[instance.a.server]\nport = 31000\n{server}\n")
    with pytest.raises(Exception) as err:
        config.load(settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)}), path)
    assert says in str(err.value) and str(path) in str(err.value) and "[instance.a" in str(err.value)


def test_a_model_table_stands_in_for_model_path(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[instance.a.model]\nrepo = "org/x"\n\n[instance.a.control]\n'
                    'command = ["srv", "--model", "{model_path}"]\n\n[instance.a.server]\nport = 31000\n')
    cfg = config.load(settings.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path)}), path)
    assert cfg.get("a").model is not None and cfg.get("a").model.key == "hub:org/x@main"


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)      # as if not installed
    with pytest.raises(Exception) as err:
        fetch.client()
    assert "huggingface_hub is not installed" in str(err.value) and "auto-infer[hub]" in str(err.value)


def test_warm_says_clearly_when_the_hub_cannot_give_the_weights(workspace: Workspace, online: object,
                                                                  tmp_path: Path) -> None:
    """No Hub at the endpoint, then a repo the Hub does not have: one clear error each, no token."""
    make_repo(tmp_path / "hub")
    path = tmp_path / "models.toml"
    env = {**workspace.env, "AUTO_INFER_SGLANG_CONFIG": str(path), "HF_TOKEN": TOKEN}
    dead = f"http://127.0.0.1:{free_port()}"
    for repo, endpoint in (("org/tiny", dead), ("org/absent", None)):
        path.write_text(f'[instance.a.model]\nrepo = "{repo}"\n\n[instance.a.server]\nport = 31000\n')
        with fakehub.FakeHub(tmp_path / "hub") as hub:
            r = run_cli(["warm"], {**env, "HF_ENDPOINT": endpoint or hub.url})
        assert r.returncode == 1, r.stderr
        assert f"cannot fetch {repo}@main from {endpoint or hub.url}" in r.stderr, r.stderr
        assert (
            f"{path}: [instance.a.model] repo" in r.stderr
            and "HF_TOKEN" in r.stderr
            and TOKEN not in r.stderr + r.stdout
            and "Traceback" not in r.stderr
        )
    assert json.loads(workspace.manifest.read_text())["models"] == []     # the packages' manifest stands
