"""Hundreds of generated invalid model configs (tests/reliability_tools.hostile_configs): wrong
types, unknown keys, duplicate ports and names, overlapping GPUs, huge or impossible numbers, path
tricks in names, TOML syntax errors, hostile overrides. Each is refused with one message naming the
file and the key (or the line), no traceback, and -- through the real `serve` -- nothing launched."""

from __future__ import annotations

import shutil
import traceback
from collections import Counter
from pathlib import Path

import pytest

from auto_infer.core import settings as settings_mod
from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.demo import mirror
from auto_infer.serve import config, registry, validate
from tests.helpers import model_folder, run_cli
from tests.reliability_tools import (
    PATH_NAMES,
    Hostile,
    _toml,
    base_config,
    count,
    hostile_configs,
    no_traceback,
    processes_mentioning,
    record,
    workspace_env,
)


def _validate(h: Hostile, tmp: Path) -> tuple[str, str, Path]:
    """What `serve` checks before it launches anything: load (structure, cross checks) + host paths."""
    path = tmp / "models.toml"
    path.write_bytes(h.text)
    env = {"AUTO_INFER_WORKSPACE_DIR": str(tmp / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path),
           "AUTO_INFER_SGLANG_OVERRIDES": h.overrides}
    try:
        cfg = config.load(settings_mod.load(env))
        validate.check_paths(cfg, cfg.enabled())
        return "accepted", "", path
    except UserError as exc:
        return "user error", str(exc), path
    except BaseException as exc:  # noqa: BLE001 - the point of the test
        return f"bug: {type(exc).__name__}", "".join(traceback.format_exception(exc))[-600:], path


def _judge(h: Hostile, outcome: str, message: str, path: Path) -> str | None:
    if outcome != "user error":
        return f"{outcome}: {message[-300:]}"
    if not h.overrides and str(path) not in message:
        return f"the message does not name the file: {message[:300]}"
    missing = [s for s in h.says if s not in message]
    return f"the message lacks {missing}: {message[:300]}" if missing else None


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return model_folder(tmp_path / "model")


def test_the_base_config_is_valid(tmp_path: Path, model_dir: Path) -> None:
    h = Hostile("base", _toml(base_config((40001, 40002))), ())
    assert _validate(h, tmp_path)[0] == "accepted"


def test_hundreds_of_hostile_configs_are_refused(tmp_path: Path, model_dir: Path) -> None:
    configs = [h for h in hostile_configs(count(300), (40001, 40002), model_dir)
               if h.kind != "path trick in a name"]
    bad: list[str] = []
    kinds: Counter[str] = Counter()
    for i, h in enumerate(configs):
        d = tmp_path / f"c{i}"
        d.mkdir()
        problem = _judge(h, *_validate(h, d))
        kinds[h.kind] += 1
        if problem:
            bad.append(f"{h.kind} ({h.note}): {problem}")
        shutil.rmtree(d)
    record("hostile-configs", test="test_reliability_configs.py",
           what="generated invalid model configs checked as `serve` checks them before launching: one "
                "UserError naming the file and the key (or line, or AUTO_INFER_SGLANG_OVERRIDES), never "
                "another exception", tried=len(configs), ok=len(configs) - len(bad), kinds=dict(kinds),
           failed=bad[:5])
    assert not bad, bad[:10]


def test_path_tricks_in_instance_names_are_refused(tmp_path: Path, model_dir: Path) -> None:
    names = list(PATH_NAMES)
    bad = []
    for i, name in enumerate(names):
        data = base_config((40001, 40002))
        data["instance"][name] = data["instance"].pop("beta")
        h = Hostile("path trick in a name", _toml(data), ("instance",), note=repr(name))
        d = tmp_path / f"n{i}"
        d.mkdir()
        problem = _judge(h, *_validate(h, d))
        if problem:
            bad.append(f"{name!r}: {problem[:120]}")
    record("hostile-config-names", test="test_reliability_configs.py",
           what="instance names with path tricks (../, a/b, /abs, empty, ., .., newline, NUL, tab, 300 "
                "characters): refused with a message naming the instance",
           tried=len(names), ok=len(names) - len(bad), accepted=bad)
    assert not bad, bad


# ---- through the real CLI: exit 1, no traceback, nothing launched -----------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, built_channel) -> dict[str, str]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("configs")
    env = workspace_env(root / "ws", built_channel.template)
    with mirror.Mirror(built_channel.channel.root, built_channel.port):
        r = run_cli(["warm"], env)
        assert r.returncode == 0, r.stderr
    return env


def test_hostile_configs_through_serve_launch_nothing(installed: dict[str, str], tmp_path: Path,
                                                      model_dir: Path) -> None:
    ports = (free_port(), free_port())
    per_kind: dict[str, list[Hostile]] = {}
    for h in hostile_configs(count(1) * 9 * 3, ports, model_dir, seed=13):
        if h.kind != "path trick in a name" and len(per_kind.setdefault(h.kind, [])) < count(1):
            per_kind[h.kind].append(h)
    sample = [h for hs in per_kind.values() for h in hs]
    settings = settings_mod.load(installed)
    bad = []
    for i, h in enumerate(sample):
        path = tmp_path / f"m{i}.toml"
        path.write_bytes(h.text)
        r = run_cli(
            ["serve"], dict(installed, AUTO_INFER_SGLANG_CONFIG=str(path), AUTO_INFER_SGLANG_OVERRIDES=h.overrides)
        )
        problems = [] if r.returncode == 1 else [f"exit {r.returncode}"]
        problems += [] if no_traceback(r.stderr) else ["traceback"]
        problems += [] if h.overrides or str(path) in r.stderr else ["file not named"]
        problems += [f"lacks {s!r}" for s in h.says if s not in r.stderr]
        if registry.all_records(settings) or settings.logs_root.exists():
            problems.append("something was launched (a record or a log folder exists)")
        for port in ports:
            if processes_mentioning(f"--port {port}"):
                problems.append(f"a process with port {port} runs")
        if problems:
            bad.append(f"{h.kind} ({h.note}): {problems}: {r.stderr[-300:]}")
    record("hostile-configs-cli", test="test_reliability_configs.py",
           what="a sample of the generated configs (every kind but names) through the real `auto-infer serve`: "
                "exit 1, file (and key/line) named, no traceback, no record, no log folder, no process",
           tried=len(sample), ok=len(sample) - len(bad), kinds=sorted(per_kind))
    assert not bad, bad


def test_a_key_repeated_inside_a_table_is_a_clear_error_for_every_task(installed: dict[str, str],
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[instance.a.control]\ncommand = ["x", "{port}"]\n[instance.a.server]\nport = 1\nport = 2\n')
    env = dict(installed, AUTO_INFER_SGLANG_CONFIG=str(path))
    results = {task: run_cli([task], env) for task in ("env", "install", "serve")}
    good = {t: r.returncode in (0, 1) and no_traceback(r.stderr) for t, r in results.items()}
    record("config-duplicate-key", test="test_reliability_configs.py",
           what="a model config with a key repeated inside a table: `env`, `install`, `serve` each end with "
                "exit 0/1 and no traceback (serve: a message naming the file and line)",
           tried=len(good), ok=sum(good.values()))
    assert all(good.values()), {t: r.stderr[-300:] for t, r in results.items()}
    assert "line 5" in results["serve"].stderr and str(path) in results["serve"].stderr
