"""Filesystem facts: the container-layer warning and atomic writes."""

from __future__ import annotations

from pathlib import Path

from auto_infer.core.fsutil import atomic_write_json, on_container_layer, read_json
from auto_infer.core.redact import redact_argv, redact_env, redact_url

DOCKER_MOUNTINFO = """\
1100 1000 0:50 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/l/A,upperdir=/u,workdir=/w
1101 1100 0:52 / /proc rw,nosuid - proc proc rw
1150 1100 8:1 /srv/offline-data /offline-data rw,relatime - ext4 /dev/sda1 rw
1151 1150 0:60 / /offline-data/.cache/sglang-infer rw - nfs4 nas:/caches rw
"""


def test_container_layer_is_detected_and_volumes_are_not() -> None:
    assert on_container_layer(Path("/root/ws/.cache"), DOCKER_MOUNTINFO)
    assert not on_container_layer(Path("/offline-data/sglang-infer"), DOCKER_MOUNTINFO)
    assert not on_container_layer(Path("/offline-data/.cache/sglang-infer/pixi"), DOCKER_MOUNTINFO)


def test_atomic_json_roundtrip_and_garbage_reads_as_none(tmp_path: Path) -> None:
    p = tmp_path / "a" / "state.json"
    atomic_write_json(p, {"x": 1})
    assert read_json(p) == {"x": 1}
    assert not list(p.parent.glob(".state.json.*"))      # no temp file left behind
    p.write_text("{not json")
    assert read_json(p) is None


def test_redaction() -> None:
    assert redact_url("http://u:pw1234@proxy:3128") == "http://u:***@proxy:3128"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"
    env = redact_env({"HTTPS_PROXY": "http://u:pw1234@p:1", "OPENAI_API_KEY": "sk-123456", "PATH": "/bin"})
    assert env == {"HTTPS_PROXY": "http://u:***@p:1", "OPENAI_API_KEY": "***", "PATH": "/bin"}
    argv = redact_argv(["--api-key", "sk-secret", "--port", "1", "--api-key=sk-2", "x sk-secret y"],
                       ["sk-secret"])
    assert argv == ["--api-key", "***", "--port", "1", "--api-key=***", "x *** y"]
