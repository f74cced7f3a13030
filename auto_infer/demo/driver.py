"""`demo`: the product's promise, for real, on an embedded default, on any Linux box.

Two machines in one folder. Machine A is online: it warms its cache from a local conda channel
served on 127.0.0.1 (the "internet") and exports one bundle file. Machine B shares nothing with A
(its own workspace, project and cache, all empty): with the mirror stopped and, where root allows,
inside a network namespace with no egress (``unshare -n``), it imports the bundle, installs the
environment from it, checks the imports and serves two servers (ready, a real chat, a report).
Every step is the real ``auto-infer`` command in its own process; the closing summary says what was
proven, with figures.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import read_json
from auto_infer.core.netns import can_unshare, offline_command
from auto_infer.core.progress import Step, fmt_secs, say
from auto_infer.core.runner import run_child, self_command
from auto_infer.core.settings import load
from auto_infer.demo import mirror
from auto_infer.demo.build import ENGINE_CMD, DemoPaths, build_template, check_workspace, demo_paths, write_config

MODULES = "auto_infer_demo_engine,auto_infer_demo_client"


def machine_env(paths: DemoPaths, machine: Path, template: Path) -> dict[str, str]:
    """A machine's contract: everything under its own folder; only the model config is shared text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTO_INFER_")}
    env.update({"AUTO_INFER_WORKSPACE_DIR": str(machine), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
                "AUTO_INFER_SGLANG_CONFIG": str(paths.config), "AUTO_INFER_INSTALLER": "rattler",
                "AUTO_INFER_CHECK_MODULES": MODULES, "AUTO_INFER_LOCK_TIMEOUT": "120",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    return env


class Steps:
    """Runs `auto-infer ARGS` as its own process per step, one line each, and keeps the times."""

    def __init__(self, log: Path, use_netns: bool):
        self.log, self.use_netns = log, use_netns
        self.times: dict[str, float] = {}
        self.notes: dict[str, str] = {}       # what each step did in this run: done, skipped, nothing to do
        log.parent.mkdir(parents=True, exist_ok=True)

    def _offline(self, cmd: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        if self.use_netns:
            return offline_command(cmd), env
        dead = "http://127.0.0.1:9"   # discard port: any egress attempt fails at once
        return cmd, dict(env, HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead, http_proxy=dead,
                         https_proxy=dead, all_proxy=dead, NO_PROXY="", no_proxy="")

    def run(self, label: str, args: list[str], env: dict[str, str], *, offline: bool = False) -> str:
        cmd = self_command(*args)
        if offline:
            cmd, env = self._offline(cmd, env)
        with open(self.log, "a") as fh:
            fh.write(f"\n# auto-infer {' '.join(args)}\n")
        lines: list[str] = []
        beat = Step(label, every=10).start(announce=False)

        def on_line(line: str) -> None:
            lines.append(line.rstrip())
            if line.strip():
                beat.note(line.strip()[-100:])

        try:      # one runner for installers and demo steps: its own process group, ended on SIGTERM
            code = run_child(cmd, env=env, log=self.log, on_line=on_line, grace=30)
        finally:
            beat.stop()
        self.times[label] = beat.elapsed
        return self._conclude(label, args, code, lines, fmt_secs(beat.elapsed))

    def _conclude(self, label: str, args: list[str], code: int, lines: list[str], elapsed: str) -> str:
        with open(self.log, "a") as fh:
            fh.write(f"(exit {code}, {elapsed})\n")
        out = "\n".join(lines)
        if code != 0:
            tail = "\n".join("      " + ln for ln in lines[-12:])
            say(f"  ✗ {label:<40} failed in {elapsed} (exit {code})\n{tail}\n    full log: {self.log}")
            raise UserError(f"demo step `{label}` failed", where=str(self.log), fix="read the log lines above")
        note = "done"
        if f"-- {args[0]} (up to date" in out:
            note = "skipped: up to date (incremental rerun)"
        elif "nothing to do" in out or "already imported" in out:
            note = "nothing to do: already done (incremental rerun)"
        self.notes[label] = note
        say(f"  ✓ {label:<40} {elapsed:>7}  {note}")
        return out


def run_step(label: str, args: list[str], env: dict[str, str], log: Path, *, offline: bool = False,
             use_netns: bool = False) -> str:
    """One step on its own (the GPU proof script drives its steps with this)."""
    return Steps(log, use_netns).run(label, args, env, offline=offline)


def _engine_command(engine: str) -> list[str]:
    if engine == "llama-cpp":
        from auto_infer.demo import engines
        found = engines.find_llamacpp(load())
        if found is None:
            raise UserError("the llama.cpp engine is not installed here", fix=engines.INSTALL_HINT)
        return engines.llamacpp_command(*found)
    return [ENGINE_CMD, "--host", "{host}", "--port", "{port}", "--model", "{served_model_name}",
            "--slow-start", "0.5"]


def machine_a(paths: DemoPaths, steps: Steps, port: int) -> None:
    env = machine_env(paths, paths.machine_a, paths.template)
    paths.bundle.parent.mkdir(parents=True, exist_ok=True)      # the "USB stick"
    try:
        with mirror.Mirror(paths.channel_root, port):
            steps.run("A: warm (online, local mirror)", ["warm"], env)
            steps.run("A: bundle export (one file)", ["bundle", "export", str(paths.bundle)], env)
    except OSError as exc:
        raise UserError(f"cannot start the demo mirror on 127.0.0.1:{port}: {exc.strerror}",
                        where=str(paths.channel_root), fix="free that port, or use a new --workspace") from None


def machine_b(paths: DemoPaths, steps: Steps, keep: bool) -> dict[str, str]:
    """Everything on B is offline: the mirror is down and (with root) B has no network at all."""
    env = machine_env(paths, paths.machine_b, paths.machine_b / "template")
    steps.run("B: bundle import (offline)", ["bundle", "import", str(paths.bundle)], env, offline=True)
    steps.run("B: install (offline, from the bundle)", ["install"], env, offline=True)
    steps.run("B: check (imports, offline)", ["check"], env, offline=True)
    # with --keep the servers must stay reachable from this shell: serve them outside the namespace
    steps.run("B: serve (ready, chat, report)", ["serve"], env, offline=not keep)
    return env


def _facts(paths: DemoPaths) -> dict[str, object]:
    """Figures for the summary, read from B's own records (not from what the steps printed)."""
    b = load({"AUTO_INFER_WORKSPACE_DIR": str(paths.machine_b)})
    record = read_json(b.install_record) or {}
    files = sum(len(names) for _, _, names in os.walk(b.env_prefix))
    manifest = read_json(b.manifest_path) or {}
    reports = sorted((paths.machine_b / "reports").glob("serve-2*.json"), key=lambda p: p.stat().st_mtime)
    return {"conda": len(record.get("conda", [])), "pypi": len(record.get("pypi", [])), "files": files,
            "bundle_bytes": paths.bundle.stat().st_size if paths.bundle.exists() else 0,
            "artifacts": len(manifest.get("artifacts", [])),
            "report": reports[-1] if reports else None, "data": read_json(reports[-1]) if reports else None}


INSTALL_STEP = "B: install (offline, from the bundle)"


def summary(paths: DemoPaths, steps: Steps, facts: dict[str, object], use_netns: bool, t0: float) -> None:
    """What this run did and proved, on stdout (the steps' lines went to stderr)."""
    cut = ("a network namespace with no egress (unshare -n, loopback only: compose's network_mode: none)"
           if use_netns else "the mirror stopped and every proxy pointed at a dead port (no root for unshare)")
    packages = f"{facts['conda']} conda + {facts['pypi']} PyPI packages ({facts['files']} files)"
    if steps.notes.get(INSTALL_STEP) == "done":
        installed = f"B installed {packages} from it, offline"
    else:
        installed = f"B's environment was already installed from it ({packages}): this run installed nothing"
    redone = [label.split(" (")[0] for label, note in steps.notes.items() if note == "done"]
    skipped = [label.split(" (")[0] for label, note in steps.notes.items() if note != "done"]
    lines = [f"\ndemo finished in {fmt_secs(time.monotonic() - t0)}. What it proved:",
             f"  - machine B shares nothing with A: its own workspace, project and cache ({paths.machine_b})",
             f"  - one file carried everything: {paths.bundle} ({facts['bundle_bytes']:,} bytes, "
             f"{facts['artifacts']} artifacts + the template + the manifest)",
             f"  - {installed}: bytes downloaded by B: 0 (network cut by {cut}; the mirror was stopped)"]
    data = facts["data"] if isinstance(facts["data"], dict) else {}
    for inst in data.get("instances", []):
        answer = (inst.get("chat") or {}).get("answer") or "(no answer)"
        lines.append(f"  - {inst.get('name')} answered a real chat: {answer.strip()[:120]}")
    lines += [f"  this run did: {', '.join(redone) or 'nothing new'}"
              + (f"; skipped (already done): {', '.join(skipped)}" if skipped else ""),
              "  time per step: " + ", ".join(f"{label.split(' (')[0]} {fmt_secs(secs)}"
                                             for label, secs in steps.times.items()),
              f"report:  {facts['report']}", f"log:     {paths.log}"]
    print("\n".join(lines), flush=True)


def run(workspace: Path | None, keep: bool, engine: str) -> Path:
    paths = demo_paths((workspace or Path(tempfile.mkdtemp(prefix="auto-infer-demo-"))).resolve())
    check_workspace(paths.workspace)          # `doit demo --workspace DIR` (auto-infer checked it already)
    paths.workspace.mkdir(parents=True, exist_ok=True)
    t0, use_netns = time.monotonic(), can_unshare()
    say(f"auto-infer demo in {paths.workspace}")
    command = _engine_command(engine)
    port = build_template(paths)
    write_config(paths, command)
    steps = Steps(paths.log, use_netns)
    machine_a(paths, steps, port)
    env_b = machine_b(paths, steps, keep)
    facts = _facts(paths)
    if not keep:
        steps.run("B: stop", ["stop"], env_b)
    summary(paths, steps, facts, use_netns, t0)
    if keep:
        say(f"servers still running (--keep): `AUTO_INFER_WORKSPACE_DIR={paths.machine_b} auto-infer status`, "
            "then `... auto-infer stop`")
    print(f"clean up: rm -rf {paths.workspace}   (nothing outside it was written)", flush=True)
    return paths.workspace
