"""A server that dies during start, with a known moment of death (for case 4).

    python bench/crasher.py --after S --dead-file PATH -- CMD ...

Sleeps S seconds, runs CMD (the test responder with --crash-on-start), writes the wall-clock
moment CMD exited to PATH, and exits with CMD's code (about a millisecond later).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--after", type=float, required=True)
    ap.add_argument("--dead-file", required=True)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    time.sleep(a.after)
    code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
    moment = time.time()
    with open(a.dead_file + ".tmp", "w") as fh:
        fh.write(f"{moment:.6f}\n")
    os.replace(a.dead_file + ".tmp", a.dead_file)
    return code


if __name__ == "__main__":
    os._exit(main())      # no interpreter finalization between the recorded moment and the exit
