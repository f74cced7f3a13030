"""A network namespace with no egress (compose's network_mode: none), where root and unshare allow."""

from __future__ import annotations

import os
import shutil
import subprocess


def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def offline_command(cmd: list[str]) -> list[str]:
    """``cmd`` in a new network namespace: loopback only, no egress (compose's network_mode: none)."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
