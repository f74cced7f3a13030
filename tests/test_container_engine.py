"""The container engine fixture itself (tests/container_engine.py): the image built the documented
way runs the boot hook as its entrypoint, then the container's own command, with no network."""

from __future__ import annotations

import pytest

from tests.container_engine import Built

pytestmark = pytest.mark.container


@pytest.fixture(params=["docker", "podman"])
def image(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(f"{request.param}_image")      # type: ignore[no-any-return]


def test_image_runs_the_hook_then_the_containers_own_command(image: Built) -> None:
    r = image.engine.cli("run", "--rm", "--network", "none", image.tag, "auto-infer", "--version", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("auto-infer ")
    hook = [ln for ln in r.stderr.splitlines() if ln.startswith("[auto-infer-boot]")]
    assert "start: warm=0 rehearse=0 install=0 serve=0" in hook[0]
    assert "exit 0: done; log: /offline-data/logs/boot.log" in hook[-1]


def test_image_has_no_network_and_the_tool_offline(image: Built) -> None:
    probe = "import socket; socket.create_connection(('deb.debian.org', 80), timeout=5)"
    r = image.engine.cli("run", "--rm", "--network", "none", image.tag, "python3", "-c", probe, timeout=300)
    assert r.returncode != 0 and ("gaierror" in r.stderr or "unreachable" in r.stderr), r.stderr
