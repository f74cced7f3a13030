"""Weights in warm's byte view: sized by the Hub's file list before the first byte, and a weight
file cut mid-transfer resumed by huggingface_hub's own mechanism (HTTP Range on the fake Hub's
file route; bytes counted at the Hub)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from auto_infer.core.meter import mb
from auto_infer.demo import fakehub, mirror
from tests.conftest import Built
from tests.helpers import clean_env, run_cli

REPO = "org/big"
SIZE = 40_000_000
CUT = SIZE * 6 // 10


@dataclass(frozen=True)
class HubSetup:
    env: dict[str, str]
    hub_root: Path
    hub_cache: Path


@pytest.fixture
def setup(tmp_path: Path, built_channel: Built) -> HubSetup:
    template, root, hub_root = tmp_path / "template", tmp_path / "ws", tmp_path / "hub"
    shutil.copytree(built_channel.template, template)
    (hub_root / REPO).mkdir(parents=True)
    (hub_root / REPO / "config.json").write_text('{"model_type": "llama"}\n')
    with open(hub_root / REPO / "model.safetensors", "wb") as fh:
        fh.write(os.urandom(SIZE))
    config = tmp_path / "models.toml"
    config.write_text(f'[master]\npython_path = "{sys.executable}"\nserver_module = "auto_infer.demo.responder"\n\n'
                      f'[instance.big.model]\nrepo = "{REPO}"\nrevision = "main"\n\n'
                      '[instance.big.server]\nport = 18999\nserved_model_name = "big"\n')
    env = clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(root), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(root / "cache"), "AUTO_INFER_INSTALLER": "rattler",
        "AUTO_INFER_CHECK_MODULES": "demo_extras", "AUTO_INFER_SGLANG_CONFIG": str(config),
        "AUTO_INFER_PROGRESS_INTERVAL": "0.2", "HOME": str(tmp_path / "home")})
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    return HubSetup(env, hub_root, root / "cache" / "huggingface" / "hub")


def test_dry_run_sizes_the_weights_by_the_hubs_file_list(setup: HubSetup, built_channel: Built) -> None:
    with mirror.Mirror(built_channel.channel.root, built_channel.port), fakehub.FakeHub(setup.hub_root) as hub:
        r = run_cli(["warm", "--dry-run"], {**setup.env, "HF_ENDPOINT": hub.url})
        assert hub.transfers == []                           # the file list only, no file
    assert r.returncode == 0, r.stderr
    total = SIZE + len('{"model_type": "llama"}\n')
    assert (f"weights {REPO}@main: 2 files, {mb(total)}; {mb(0)} in the cache, {mb(total)} to download "
            f"→ {setup.hub_cache}") in r.stdout, r.stdout


def test_a_weight_file_cut_mid_transfer_resumes_with_range(setup: HubSetup, built_channel: Built) -> None:
    with mirror.Mirror(built_channel.channel.root, built_channel.port), fakehub.FakeHub(setup.hub_root) as hub:
        hub.state.cut["model.safetensors"] = CUT
        r = run_cli(["warm"], {**setup.env, "HF_ENDPOINT": hub.url})
        sent = [(start, n) for name, start, n in hub.transfers if name == "model.safetensors"]
    assert r.returncode == 0, r.stderr
    (first, got_first), (resumed_at, got_again) = sent          # two requests, the second with Range
    assert (first, got_first) == (0, CUT), sent
    # the client goes on from the last whole chunk it wrote (huggingface_hub's DOWNLOAD_CHUNK_SIZE, 10 MiB)
    assert CUT - (10 << 20) <= resumed_at <= CUT and resumed_at + got_again == SIZE, sent
    assert f"weights {REPO}@main: 2 files, {mb(SIZE + 24)}; {mb(0)} in the cache" in r.stderr, r.stderr
    blob = next((setup.hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots").glob("*/model.safetensors"))
    assert blob.stat().st_size == SIZE
    assert any(re.search(rf"… weights {REPO}@main: .* of {mb(SIZE + 24)} .*in flight: model\.safetensors \d+%", ln)
               for ln in r.stderr.splitlines()), r.stderr         # the client's file, seen on disk
    assert f"✓ warm: weights {REPO}@main" in r.stderr and f"{mb(SIZE + 24)}" in r.stderr, r.stderr


def test_partial_files_no_client_resumes_are_not_counted_and_stale_ones_removed(setup: HubSetup,
                                                                               built_channel: Built) -> None:
    """huggingface_hub 2.x writes one partial file per process and never resumes it: one a killed warm
    left is not "in the cache" for the plan, and is removed once nobody has written it for 10 minutes."""
    blobs = setup.hub_cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    etag = "ab" * 32
    stale, fresh = blobs / f"{etag}.0badc0de.incomplete", blobs / f"{etag}.1234abcd.incomplete"
    for path in (stale, fresh):
        path.write_bytes(os.urandom(3_000_000))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with mirror.Mirror(built_channel.channel.root, built_channel.port), fakehub.FakeHub(setup.hub_root) as hub:
        dry = run_cli(["warm", "--dry-run"], {**setup.env, "HF_ENDPOINT": hub.url})
        r = run_cli(["warm"], {**setup.env, "HF_ENDPOINT": hub.url})
    assert dry.returncode == 0 and f"{mb(0)} in the cache, {mb(SIZE + 24)} to download" in dry.stdout, dry.stdout
    assert r.returncode == 0, r.stderr
    assert f"removed 1 partial file(s) of an earlier, killed download ({mb(3_000_000)})" in r.stderr, r.stderr
    assert not stale.exists() and fresh.exists()             # another process may still be writing that one
