"""Issue 21's classes of hostile input, counted for docs/reliability.md: writing over what is not
ours, secrets by value, one flag two ways, names from URLs. Each loop tries every kind the class
has (the unit tests next to each module hold the single cases); figures go through ``record``."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import pytest

from auto_infer.core import settings as settings_mod
from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text, open_append
from auto_infer.install import bundle_layout, lockfile
from auto_infer.serve import config, launch
from tests.conftest import Built
from tests.helpers import clean_env, run_cli, small_channel_specs
from tests.reliability_tools import no_traceback, record
from tests.test_output_paths import THINGS, _state

ROOT = os.geteuid() == 0
KINDS = sorted(k for k in THINGS if ROOT or k != "device")


# ---- 21.1 never write over what is not ours --------------------------------------------------------

def _writers(tmp: Path, template: Path) -> dict[str, object]:
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp / "ws"), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
                     "AUTO_INFER_SGLANG_CACHE_ROOT": str(tmp / "ws" / "cache"), "HOME": str(tmp / "home")})

    def export(p: Path) -> str | None:
        r = run_cli(["bundle", "export", str(p)], env, timeout=120)
        return None if r.returncode == 1 and str(p) in r.stderr and no_traceback(r.stderr) else \
            f"exit {r.returncode}: {r.stderr[-200:]}"

    def log_file(p: Path) -> str | None:
        cfg = tmp / f"log-{p.name}.toml"
        cfg.write_text(f'[instance.one.control]\ncommand = ["{sys.executable}", "-c", "pass", "{{port}}"]\n'
                       f'log_file = "{p}"\n[instance.one.server]\nport = 18123\n')
        r = run_cli(["serve", "--dry-run"], {**env, "AUTO_INFER_SGLANG_CONFIG": str(cfg)}, timeout=60)
        return None if r.returncode == 1 and str(p) in r.stderr and no_traceback(r.stderr) else \
            f"exit {r.returncode}: {r.stderr[-200:]}"

    def atomic(p: Path) -> str | None:        # reports, records, manifests, k8s files: one writer
        try:
            atomic_write_text(p, "x")
        except UserError as exc:
            return None if str(p) in str(exc) else str(exc)
        return "written"

    def append(p: Path) -> str | None:        # server logs
        try:
            open_append(p).close()
        except UserError:
            return None
        return "opened"

    def workspace(p: Path) -> str | None:     # a folder to create or use: a folder there is fine
        r = run_cli(["demo", "--workspace", str(p)], env, timeout=60)
        return None if r.returncode == 1 and str(p) in r.stderr and no_traceback(r.stderr) else \
            f"exit {r.returncode}: {r.stderr[-200:]}"

    return {"bundle export FILE": export, "server log_file (serve)": log_file, "atomic write": atomic,
            "append to a log": append, "demo --workspace": workspace}


def test_no_writer_replaces_what_is_not_a_regular_file(built_channel: Built, tmp_path: Path) -> None:
    writers = _writers(tmp_path, built_channel.template)
    bad, tried = [], 0
    for (name, write), kind in itertools.product(writers.items(), KINDS):
        if name == "demo --workspace" and kind == "folder":
            continue
        p = tmp_path / f"out-{abs(hash((name, kind)))}"
        THINGS[kind](p)
        before = _state(p)
        problem = write(p)  # type: ignore[operator]
        tried += 1
        if problem or _state(p) != before:
            bad.append(f"{name} over a {kind}: {problem or 'changed'}")
    record("never-write-over", test="test_reliability_hostile.py",
           what=f"every writer to a user-given path ({', '.join(writers)}) aimed at {', '.join(KINDS)}: "
                "refused with exit 1 / one error naming the path, the thing left exactly as it was "
                "(mode, inode, link target)", tried=tried, ok=tried - len(bad), failed=bad[:3])
    assert not bad, bad


# ---- 21.2 secrets by value ------------------------------------------------------------------------

SECRET_ENV = {"GITHUB_PAT": "ghp_{s}", "MY_SERVICE_TOKEN": "tok-{s}", "DB_PASSWORD": "pw-{s}", "X_API_KEY": "ak-{s}",
              "AWS_SECRET_ACCESS_KEY": "aws-{s}", "HFTOKEN": "hf-{s}", "REDIS_PASS": "rp-{s}",
              "DB_URL": "postgres://app:{s}@db:5432/x", "UPSTREAM": "https://user:{s}@h.example/v1",
              "REPO": "https://x-access:{s}@github.com/o/r.git", "NOTE_URL": "https://h/x?access_token={s}"}
SECRET_ARGS = [["--hf-token", "{s}"], ["--db-password={s}"], ["--upstream", "https://u:{s}@h/x"],
               ["--auth", "{s}"], ["--github-pat", "{s}"]]


def test_secrets_by_value_never_reach_the_dry_run_plan(tmp_path: Path) -> None:
    """Every secret shape in control.env and in a command's arguments: the dry-run plan (text and
    JSON) shows none of them (the server records, report and logs: test_serve_records)."""
    bad, tried = [], 0
    for i, ((name, shape), args) in enumerate(zip(SECRET_ENV.items(), itertools.cycle(SECRET_ARGS))):
        secret = f"S3cr3t{i:03d}xyzzy"
        argv = [sys.executable, "-m", "srv", "--port", "{port}", *(a.format(s=secret) for a in args)]
        cfg = tmp_path / f"s{i}.toml"
        cfg.write_text(f'[instance.one.control]\ncommand = {json.dumps(argv)}\n'
                       f'env = {{ {name} = "{shape.format(s=secret)}" }}\n[instance.one.server]\nport = 18124\n')
        env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(cfg)})
        for extra in ([], ["--json"]):
            r = run_cli(["serve", "--dry-run", *extra], env, timeout=60)
            tried += 1
            if r.returncode != 0 or secret in r.stdout + r.stderr:
                bad.append(f"{name} + {args[0]} {' '.join(extra)}: exit {r.returncode}")
    record("secrets-by-value", test="test_reliability_hostile.py",
           what="secrets in control.env by name (GITHUB_PAT, MY_SERVICE_TOKEN, DB_PASSWORD, X_API_KEY, "
                "AWS_SECRET_ACCESS_KEY, HFTOKEN, REDIS_PASS) and by value (URL user-info under DB_URL, UPSTREAM, "
                "REPO; a token in NOTE_URL's query), each with a "
                "secret command flag (--hf-token, --db-password=, --auth, --github-pat, a URL with credentials): "
                "`serve --dry-run` (text and JSON) shows none", tried=tried, ok=tried - len(bad), failed=bad[:3])
    assert not bad, bad


# ---- 21.5 one flag, two ways ----------------------------------------------------------------------

HEADS = {
    "sglang": (
        '[master]\nengine = "sglang"\npython_path = "/usr/bin/python3"\n',
        'model_path = "/m"',
        [
            ("tp-size", "tp_size"),
            ("--tp-size", "tensor_parallel_size"),
            ("--context-length", "context_length"),
            ("--mem-fraction-static", "mem_fraction_static"),
        ],
    ),
    "vllm": (
        '[master]\nengine = "vllm"\npython_path = "/usr/bin/python3"\n',
        'model = "/m"',
        [
            ("-tp", "tensor_parallel_size"),
            ("max-model-len", "--max_model_len"),
            ("--gpu-memory-utilization", "gpu_memory_utilization"),
        ],
    ),
    "llamacpp": (
        '[master]\nengine = "llamacpp"\nllama_cpp_path = "/bin/true"\n',
        'model = "/m.gguf"',
        [("ngl", "n_gpu_layers"), ("-c", "ctx-size"), ("--port", "port"), ("a", "alias")],
    ),
}


def _refused(tmp: Path, text: str, *says: str) -> str | None:
    path = tmp / "models.toml"
    path.write_text(text)
    try:
        config.load(
            settings_mod.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path)})
        )
    except UserError as exc:
        missing = [s for s in says if s not in str(exc)]
        return f"message lacks {missing}" if missing else None
    return "accepted"


def test_one_flag_two_ways_is_refused_for_every_engine(tmp_path: Path) -> None:
    bad, tried = [], 0
    for engine, (head, model, pairs) in HEADS.items():
        for a, b in pairs:
            for text, says in (
                    (f'{head}[instance.x.server]\n{model}\n"{a}" = 1\n"{b}" = 2\n', (f"'{a}'", f"'{b}'")),
                    (f'{head}[instance.x.server]\n{model}\n"{b}" = 2\nextra_args = ["-{a.lstrip("-")}", "1"]\n',
                     ("extra_args", a.lstrip("-"))),
                    (f'{head}[instance.x.server]\n{model}\n"{b}" = 2\nextra_args = "--{a.lstrip("-")}=1"\n',
                     ("extra_args",))):
                tried += 1
                problem = _refused(tmp_path, text, *says)
                if problem:
                    bad.append(f"{engine} {a!r}/{b!r}: {problem}")
    dashed = 0
    for engine, (head, model, _pairs) in HEADS.items():       # a dashed key renders one flag, never ----x
        path = tmp_path / f"d-{engine}.toml"
        path.write_text(f'{head}[instance.server]\n"--port" = 1200\n[instance.x.server]\n{model}\n"--port" = 1234\n')
        s = settings_mod.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(path)})
        cfg = config.load(s)
        argv = launch.build_launch(s, cfg, cfg.instances[0], {}).argv
        tried, dashed = tried + 1, dashed + 1
        if argv.count("--port") != 1 or argv[argv.index("--port") + 1] != "1234" or cfg.instances[0].port != 1234:
            bad.append(f"{engine} '--port': {argv}")
    record("same-flag-two-ways", test="test_reliability_hostile.py",
           what="one flag given twice for SGLang, vLLM and llama.cpp: two spellings (tp-size / tp_size, "
                "--max_model_len), a spelling and the engine's alias (tensor_parallel_size, -tp, -ngl, -c, a), a "
                "key and extra_args (-x v, --x=v): refused naming both; and \"--port\" keys (default and "
                "instance) render one --port, the probe reading the same", tried=tried, ok=tried - len(bad),
           rendered=dashed, failed=bad[:3])
    assert not bad, bad


# ---- 21.7 names from URLs ---------------------------------------------------------------------------

TAILS = ["?x=../../y", "#../../y", "?a=b/c/../../d", "?f=/etc/passwd#x/../..", "?x=%2F..%2F..%2Fy", "#/",
         "?", "#", "?../../x.conda", "?a=1&b=../x.tar.bz2"]
DECODED = ["%2F..%2Fz.tar.bz2", "%00.conda", "%0A.conda"]


@pytest.mark.parametrize("dummy", [0])
def test_names_come_from_the_url_path_only(dummy: int, tmp_path: Path) -> None:
    from auto_infer.demo import channel
    built = channel.build(tmp_path / "chan", "http://127.0.0.1:9", *small_channel_specs())
    lock = built.project / "pixi.lock"
    original = lock.read_text()
    s = settings_mod.load({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws")})
    bad, tried, refused = [], 0, []
    for tail in TAILS:
        lock.write_text(original.replace("hello-1.0-0.tar.bz2", "hello-1.0-0.tar.bz2" + tail))
        tried += 1
        try:
            a = next(x for x in lockfile.read(lock, "default", "linux-64").conda if x.name == "hello")
        except UserError as exc:         # rattler may refuse a URL it cannot name a build from: fine
            refused.append(tail)
            if exc.where != str(lock):
                bad.append(f"{tail}: refused without naming the lock: {exc}")
            continue
        store = bundle_layout.store_path(s, a)
        if bundle_layout.member_path(a) != "conda/linux-64/hello-1.0-0.tar.bz2" or \
                s.conda_archive_dir.resolve() not in store.resolve().parents:
            bad.append(f"{tail}: {bundle_layout.member_path(a)} {store}")
    for tail in DECODED:
        lock.write_text(original.replace("hello-1.0-0.tar.bz2", "hello-1.0-0.tar.bz2" + tail))
        tried += 1
        try:
            lockfile.read(lock, "default", "linux-64")
            bad.append(f"{tail}: accepted")
        except UserError as exc:
            if exc.where != str(lock):
                bad.append(f"{tail}: {exc}")
    record("names-from-urls", test="test_reliability_hostile.py",
           what="a conda URL with a query or fragment holding ../ or / (10 shapes): stored and exported as "
                "conda/linux-64/<file>, inside the archive store (or refused naming the lock where rattler cannot "
                "read it); a path that decodes to ../, NUL or a newline (3): refused naming the lock (the bundle "
                "round trip: test_lock_entries)", tried=tried, ok=tried - len(bad), refused_by_rattler=refused,
           failed=bad[:3])
    assert not bad, bad
