"""Fuzz the two readers a user feeds by hand -- the model config (and its JSON overrides) and
pixi.lock -- with wrong types and depths at every place of a valid file: each input is accepted or
refused with one UserError naming the file (or the variable); never another exception (exit 3)."""

from __future__ import annotations

import datetime
import json
import random
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auto_infer.core import settings as settings_mod
from auto_infer.core.errors import UserError
from auto_infer.install import lockfile
from auto_infer.serve import config, dryrun, validate
from tests.helpers import clean_env, run_cli
from tests.reliability_tools import _toml, base_config, count, no_traceback, record


def nested(depth: int, leaf: Any, kind: str) -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"k": leaf}
    return leaf


def hostile_value(rng: random.Random) -> Any:
    pool: list[Callable[[], Any]] = [
        lambda: rng.choice(["", "x", "0", "-1", "true", "../../etc", "a" * 5000, "\u202e\u0000"[:1], "🙂"]),
        lambda: rng.choice([0, -1, 1, 2**63 - 1, -(2**63)]),
        lambda: rng.choice([0.0, -0.5, 1e308, float("inf"), float("nan")]),
        lambda: rng.choice([True, False]),
        lambda: datetime.datetime(2026, 1, 1, 12, 0),
        lambda: datetime.date(2026, 1, 1),
        lambda: [], lambda: {}, lambda: [1, "a", True], lambda: [{"a": 1}, {"b": [2]}],
        lambda: {"x": {"y": {"z": 1}}},
        lambda: nested(rng.choice([2, 5, 20, 31, 33, 60, 200]), rng.choice([1, "s", {}]), rng.choice(["list", "dict"])),
    ]
    return rng.choice(pool)()


def deep_text(rng: random.Random, ports: tuple[int, int]) -> bytes:
    """The base config with a value nested 500-100,000 deep (list, inline table, or dotted table
    header) put under a random table."""
    lines = _toml(base_config(ports)).decode().splitlines()
    depth = rng.choice([500, 5000, 100000])
    value = rng.choice(["[" * depth + "]" * depth, "{a = " * depth + "1" + "}" * depth])
    if rng.random() < 0.2:
        lines.append("[" + ".".join(["instance", "alpha", "server"] + ["d"] * min(depth, 3000)) + "]\nx = 1")
    else:
        at = rng.choice([i + 1 for i, line in enumerate(lines) if line.startswith("[")] or [0])
        lines.insert(at, f"deep = {value}")
    return ("\n".join(lines) + "\n").encode()


def _places(data: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Every (table, key) of ``data``, tables included, plus a new key in every table."""
    out: list[tuple[dict[str, Any], str]] = []
    stack = [data]
    while stack:
        table = stack.pop()
        out.append((table, "fuzz_new_key"))
        for key, value in table.items():
            out.append((table, key))
            if isinstance(value, dict):
                stack.append(value)
    return out


def mutate(rng: random.Random, ports: tuple[int, int]) -> tuple[dict[str, Any], str]:
    data = base_config(ports)
    data["router"] = {"enable": True, "port": ports[0] + 100, "policy": "round_robin"} if rng.random() < 0.2 else {}
    if not data["router"]:
        del data["router"]
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        table, key = rng.choice(_places(data))
        if rng.random() < 0.1 and key in table:
            del table[key]
            continue
        table[key] = hostile_value(rng)
    return data, ""


def _judge(path: Path, overrides: str, tmp: Path) -> str | None:
    env = {"AUTO_INFER_WORKSPACE_DIR": str(tmp / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path),
           "AUTO_INFER_SGLANG_OVERRIDES": overrides}
    try:
        s = settings_mod.load(env)
        cfg = config.load(s)
        validate.check_paths(cfg, cfg.enabled())
        dryrun.describe(s)                        # every argv and environment built, as serve would
        return None
    except UserError as exc:
        named = "AUTO_INFER_SGLANG_OVERRIDES" if overrides else str(path)
        return None if named in str(exc) else f"the message does not name {named}: {str(exc)[:300]}"
    except BaseException as exc:  # noqa: BLE001 - the point of the test
        return f"{type(exc).__name__}: {''.join(traceback.format_exception(exc))[-500:]}"


def test_the_model_config_reader_takes_wrong_types_and_depths_anywhere(tmp_path: Path) -> None:
    rng = random.Random(21)
    bad: list[str] = []
    kinds: Counter[str] = Counter()
    n = count(400)
    for i in range(n):
        path = tmp_path / f"c{i}.toml"
        overrides = ""
        if i % 10 == 9:       # deeper than any writer goes: raw text, as a careless generator writes it
            path.write_bytes(deep_text(rng, (40001, 40002)))
            kinds["deep text"] += 1
        elif i % 10 == 8:
            path.write_bytes(_toml(base_config((40001, 40002))))
            depth = rng.choice([40, 900, 5000, 100000])
            overrides = '{"instance": {"alpha": {"server": {"x": ' + "[" * depth + "]" * depth + "}}}}"
            kinds["deep JSON overrides"] += 1
        elif i % 4 == 3:        # the same faults through AUTO_INFER_SGLANG_OVERRIDES (JSON)
            data, _ = mutate(rng, (40001, 40002))
            path.write_bytes(_toml(base_config((40001, 40002))))
            overrides = json.dumps(data, default=str)
            kinds["overrides"] += 1
        else:
            data, _ = mutate(rng, (40001, 40002))
            try:
                path.write_bytes(_toml(data))
            except Exception:  # noqa: BLE001 - a value TOML cannot write (e.g. nan in a key): skip it
                kinds["not writable as TOML"] += 1
                continue
            kinds["file"] += 1
        problem = _judge(path, overrides, tmp_path)
        if problem:
            bad.append(f"case {i}: {problem}")
    tried = sum(v for k, v in kinds.items() if k != "not writable as TOML")
    record("config-reader-fuzz", test="test_reliability_fuzz.py",
           what="valid model configs with 1-3 keys or whole tables anywhere (master, control, server, env, "
                "command, router, a new key) replaced by a wrong type (string, number, nan, inf, date, list, "
                "table) or nested 2-200 deep, or removed; values nested 500-100,000 deep in the text and 40-100,000 "
                "deep in the JSON; as the file and as AUTO_INFER_SGLANG_OVERRIDES; read, "
                "checked and built into argv as serve --dry-run does: accepted or one UserError naming the "
                "file (or the variable), never another exception",
           tried=tried, ok=tried - len(bad), kinds=dict(kinds), failed=bad[:3])
    assert not bad, bad[:5]


def test_the_model_config_fuzz_through_the_real_cli(tmp_path: Path) -> None:
    rng = random.Random(22)
    bad = []
    n = count(6)
    for i in range(n):
        data, _ = mutate(rng, (40011, 40012))
        path = tmp_path / f"cli{i}.toml"
        try:
            path.write_bytes(_toml(data))
        except Exception:  # noqa: BLE001
            path.write_bytes(_toml(base_config((40011, 40012))) + b"\nx = " + b"[" * 500 + b"]" * 500 + b"\n")
        env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / f"ws{i}"), "AUTO_INFER_SGLANG_CONFIG": str(path),
                         "HOME": str(tmp_path / "home")})
        r = run_cli(["serve", "--dry-run"], env, timeout=120)
        if r.returncode not in (0, 1) or not no_traceback(r.stderr):
            bad.append(f"exit {r.returncode}: {r.stderr[-300:]}")
    record("config-reader-fuzz-cli", test="test_reliability_fuzz.py",
           what="a sample of the fuzzed model configs through the real `serve --dry-run`: exit 0 or 1, no "
                "traceback", tried=n, ok=n - len(bad))
    assert not bad, bad


# ---- pixi.lock: wrong YAML types and depths at every field ---------------------------------------

def yaml_value(rng: random.Random) -> str:
    return rng.choice([
        "5", "-1", "1.5", "true", "~", "''", "'x'", "[]", "{}", "[1, 2]", "{a: 1}", "[[1]]", "{a: {b: [1]}}",
        "2026-01-01", "!!binary aGVsbG8=", "&x [1]", "*nope", "'../../etc/passwd'", "'http://h/x.conda?y=../../z'",
        "[" * 40 + "]" * 40, "[" * 400 + "]" * 400, "{a: " * 60 + "1" + "}" * 60, "'" + "x" * 10000 + "'",
        "|\n    multi\n    line",
    ])


def lock_mutations(text: str, rng: random.Random, n: int) -> list[str]:
    lines = text.splitlines()
    fields = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("#")]
    out = []
    for _ in range(n):
        new = list(lines)
        for _ in range(rng.choice([1, 1, 2, 3])):
            i = rng.choice(fields)
            key, _sep, _value = new[i].partition(":")
            if key.strip() == "version" and rng.random() < 0.7:
                continue                        # mostly keep the version: the parser goes further
            new[i] = f"{key}: {yaml_value(rng)}"
        out.append("\n".join(new) + "\n")
    return out


def test_the_lock_reader_takes_wrong_types_and_depths_anywhere(built_channel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(23)
    target = tmp_path / "pixi.lock"
    inputs = lock_mutations((built_channel.template / "pixi.lock").read_text(), rng, count(200))
    outcome: Counter[str] = Counter()
    bugs = []
    for text in inputs:
        target.write_text(text)
        try:
            lockfile.read(target, "default", "linux-64")
            outcome["parsed"] += 1
        except UserError as exc:
            outcome["user error"] += 1
            if exc.where != str(target):
                bugs.append(f"message does not name the file: {exc}")
        except BaseException as exc:  # noqa: BLE001 - the point of the test
            bugs.append(f"{type(exc).__name__}: {str(exc)[:300]}")
    tried = len(inputs)
    record("lock-reader-types", test="test_reliability_fuzz.py",
           what="the test pixi.lock with 1-3 fields (version, environments, channels, packages, url, sha256, "
                "size, depends, subdir...) given a wrong YAML type (number, null, list, map, date, binary, an "
                "unknown alias, a URL with ../ in its query) or nested 40-400 deep: lockfile.read returns a "
                "LockedEnv or a UserError naming the file, nothing else",
           tried=tried, ok=tried - len(bugs), **outcome)
    assert not bugs, bugs[:5]
