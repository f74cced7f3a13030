"""Fixtures: isolation from real workspaces, a real local conda channel, a mirror, a workspace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from auto_infer.core.net import free_port
from auto_infer.core.netns import can_unshare
from auto_infer.core.settings import CACHE_VARS, PROXY_VARS, load
from auto_infer.demo import channel, mirror
from auto_infer.serve import actions, registry
from tests.helpers import Workspace, new_workspace, small_channel_specs
from tests.helpers.serving import Serve, make_installed

# docker_engine / podman_engine / docker_image / podman_image: real container engines (see its docstring)
pytest_plugins = ["tests.container_engine"]


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test can touch a real workspace or cache: the defaults point at a *file*."""
    for name in list(os.environ):
        if name in PROXY_VARS or name in CACHE_VARS or name.startswith("AUTO_INFER_"):
            monkeypatch.delenv(name, raising=False)
    trap = tmp_path_factory.getbasetemp() / "unusable-default-workspace"
    trap.write_text("tests must use the `workspace` fixture\n")
    monkeypatch.setenv("AUTO_INFER_WORKSPACE_DIR", str(trap))
    monkeypatch.setenv("HOME", str(tmp_path_factory.getbasetemp() / "home"))


@dataclass
class Built:
    channel: channel.BuiltChannel
    port: int

    @property
    def template(self) -> Path:
        return self.channel.project


@pytest.fixture(scope="session")
def built_channel(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("channel")
    port = free_port()
    conda, wheels = small_channel_specs()
    return Built(channel.build(root, f"http://127.0.0.1:{port}", conda, wheels), port)


@pytest.fixture
def online(built_channel: Built) -> Iterator[mirror.Mirror]:
    """The channel served on 127.0.0.1 for the length of one test."""
    with mirror.Mirror(built_channel.channel.root, built_channel.port) as m:
        yield m


@pytest.fixture
def workspace(tmp_path: Path, built_channel: Built) -> Workspace:
    """A fresh workspace whose template is a private copy of the test channel's template."""
    return new_workspace(tmp_path, built_channel.template)


needs_netns = pytest.mark.skipif(not can_unshare(), reason="needs root and unshare -n")


# The default `python -m pytest` stays fast enough to run before every commit (2 cores: under 8
# minutes); these journeys and counts carry the `slow` marker and run in CI's second pass
# (`python -m pytest -m slow`, .ci/run). Listed here, not in each file, so the list is one place.
SLOW_MODULES = {
    "test_wheel",                   # builds the wheel, installs it into a fresh venv, runs the demo
    "test_tutorial", "test_tutorial_air_gap",      # the docs' tutorials, end to end
    "test_bench",                   # the benchmark harness on the real tools
    "test_realworld",               # infer-dev's real locks, every artifact
    "test_downloads",               # two 200 MB artifacts cut, resumed and re-fetched over real sockets
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or module.startswith("test_reliability_"):   # reliability counts
            item.add_marker(pytest.mark.slow)


# ---- serving: one installed workspace per test module (warm once), a Serve handle per test --------

@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, built_channel: Built) -> Workspace:
    return make_installed(tmp_path_factory, built_channel)


@pytest.fixture
def serve(installed: Workspace, tmp_path: Path) -> Iterator[Serve]:
    config = tmp_path / "models.toml"
    s = Serve(installed, config, {**installed.env, "AUTO_INFER_SGLANG_CONFIG": str(config)})
    before = set(registry.all_records(load(s.env)))
    yield s
    started = [n for n in registry.all_records(load(s.env)) if n not in before]
    if started:
        actions.stop(load(s.env), started)
