"""Case 12: the product in a real container engine (a private dockerd, tests/container_engine.py).

`docker-compose up` with the offline override and AUTO_INFER_SGLANG_ON_BOOT=1, on a workspace whose
caches are warm and whose environment is not installed, timed until the boot hook's last line (the
install, the check, the servers ready and answering), against the same `auto-infer boot` on the host
(same caches, lock, config, engine); and a `docker-compose restart` (the install skipped) against
that cold `up`. Left out of --quick unless named (it builds images and starts containers)."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.demo.mirror import Mirror
from bench.report import Case, Row
from bench.timing import Failed, Series, run

TITLE = "In a container: `up` → ready, warm restart"
UP, HOST, RESTART = "compose up → ready (install + serve)", "host: auto-infer boot (install + serve)", \
    "compose restart → ready (install skipped)"
OFFLINE = ("docker-compose.sglang-template.yml", "docker-compose.offline.yml")


def case_container(work: Path, cli: list[str], a: argparse.Namespace, progress: Callable[[str], None]) -> Case:
    from tests import container_engine as ce

    c = Case("12", TITLE, __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() if __doc__ else "")
    try:
        engine = ce.start_docker()
    except ce.EngineUnavailable as exc:
        c.skipped = f"no container engine here: {exc}"
        return c
    try:
        _measure(c, ce.build_images(engine), work / "container", cli, a, progress)
    finally:
        ce.stop(engine)
    return c


def _measure(c: Case, built: object, work: Path, cli: list[str], a: argparse.Namespace,
             progress: Callable[[str], None]) -> None:
    from tests.container_stack import BOOT_END, GGUF_DIR, LLAMA_DIR, make_stack, model_config

    port = free_port()
    stack = make_stack(built, work, port)           # type: ignore[arg-type]
    with Mirror(work / "channel", port):
        r = stack.compose(OFFLINE[:1], "run", "--rm", "stage-2", "true", AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT="1")
        if r.returncode != 0:
            raise Failed(f"warm in the container failed: {r.stderr[-1000:]}")
    stack.boots_seen = len(BOOT_END.findall(stack.boot_log()))
    host_ws = work / "host-ws"
    shutil.copytree(stack.ws / ".cache", host_ws / ".cache", symlinks=True)
    config = host_ws / "host.toml"
    server = None if stack.engine_name == "demo" else LLAMA_DIR / "bin" / "llama-server"
    config.write_text(model_config(free_port(), server).replace("/llm-models/", f"{GGUF_DIR}/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_")}
    env.update({"AUTO_INFER_WORKSPACE_DIR": str(host_ws), "AUTO_INFER_SGLANG_ON_BOOT": "1",
                "AUTO_INFER_SGLANG_TEMPLATE_DIR": stack.env["HOST_VOLUME_SGLANG_TEMPLATE_DIR"],
                "AUTO_INFER_SGLANG_CONFIG": str(config), "AUTO_INFER_INSTALLER": "rattler",
                "AUTO_INFER_CHECK_MODULES": stack.env["AUTO_INFER_CHECK_MODULES"]})
    series = {name: Series(name) for name in (UP, HOST, RESTART)}

    def container() -> None:
        shutil.rmtree(stack.ws / "sglang-infer", ignore_errors=True)      # caches stay: a warm volume
        for name, args in ((UP, ("up", "-d")), (RESTART, ("restart", "stage-2"))):
            t0 = time.perf_counter()
            if stack.compose(OFFLINE, *args, AUTO_INFER_SGLANG_ON_BOOT="1").returncode != 0 or stack.next_boot()[0]:
                raise Failed(f"{name} failed; boot.log: {stack.boot_log()[-1500:]}")
            series[name].samples.append(time.perf_counter() - t0)
        stack.compose(OFFLINE, "down")

    def host() -> None:
        shutil.rmtree(host_ws / "sglang-infer", ignore_errors=True)
        secs, _ = run([*cli, "boot"], env)
        series[HOST].samples.append(secs)
        run([*cli, "stop"], env)

    try:
        for rnd in range(a.warmup + a.repeats):
            for step in ((container, host) if rnd % 2 == 0 else (host, container)):
                step()
            if rnd < a.warmup:
                for s in series.values():
                    s.samples.clear()
            progress(f"round {rnd + 1}: " + "  ".join(f"{n.split(' (')[0]} {s.samples[-1]:.2f}s"
                                                      for n, s in series.items() if s.samples))
    finally:
        stack.compose(OFFLINE, "down", timeout=300)
    c.rows = [Row(UP, series[UP], HOST), Row(HOST, series[HOST]), Row(RESTART, series[RESTART], UP)]
    c.notes.append(f"engine served: {stack.engine_name}; Docker {built.engine.name} daemon of the tests "  # type: ignore[attr-defined]
                   "(overlay2); `restart` includes stopping the container (its command ends on SIGTERM at once)")
