"""One exit-code contract for every path (issue 10): 0 ok, 1 a fixable problem, 2 a usage error,
130 interrupted, 3 a bug with a crash log. Read-only commands write nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import CLI, clean_env, run_cli


@pytest.fixture
def bare(tmp_path: Path) -> dict[str, str]:
    """A workspace that does not exist yet (a bare host)."""
    return clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "HOME": str(tmp_path / "home")})


def test_mistyped_task_is_a_usage_error_with_a_suggestion(bare: dict[str, str]) -> None:
    r = run_cli(["srve"], bare)
    assert r.returncode == 2, r.stderr
    assert "did you mean `serve`?" in r.stderr and "Traceback" not in r.stderr


def test_mistyped_option_is_a_usage_error(bare: dict[str, str]) -> None:
    r = run_cli(["status", "--jsn"], bare)
    assert r.returncode == 2 and "--jsn" in r.stderr and "auto-infer help status" in r.stderr, r.stderr


def test_info_of_an_unknown_task_is_a_usage_error(bare: dict[str, str]) -> None:
    r = run_cli(["info", "instal"], bare)
    assert r.returncode == 2 and "did you mean `install`?" in r.stderr, r.stderr
    assert "internal error" not in r.stderr


@pytest.mark.parametrize(("name", "says"), [("nosuch", "`nosuch`\n"), ("srve", "`srve`; did you mean `serve`?")])
def test_help_of_an_unknown_name_is_the_unknown_task_error(bare: dict[str, str], name: str, says: str) -> None:
    r = run_cli(["help", name], bare)
    assert r.returncode == 2, r.stderr
    assert f"unknown task or command {says}" in r.stderr, r.stderr
    assert r.stderr.startswith("auto-infer: unknown task") and "fix:" in r.stderr and not r.stdout


def test_an_unknown_instance_lists_the_configs_instances(bare: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text("".join(f'[instance.{n}.control]\ncommand = ["python", "-m", "srv", "--port", "{p}"]\n'
                              f"[instance.{n}.server]\nport = {p}\n" for n, p in (("a", 18001), ("b", 18002))))
    r = run_cli(["serve:nosuch", "--dry-run"], {**bare, "AUTO_INFER_SGLANG_CONFIG": str(config)})
    assert r.returncode == 2, r.stderr
    assert "unknown task `serve:nosuch`: the sub-tasks of `serve` are serve:a, serve:b" in r.stderr, r.stderr
    assert "did you mean" not in r.stderr
    # `serve a`, written as `stop a` and `logs a` are: it said "unknown task or command `a`"
    spaced = run_cli(["serve", "a"], {**bare, "AUTO_INFER_SGLANG_CONFIG": str(config)})
    assert spaced.returncode == 2, spaced.stderr
    assert "one instance is `serve:a`" in spaced.stderr and "fix:   auto-infer serve:a" in spaced.stderr
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists()


def test_a_number_option_that_is_not_a_number_names_the_option(bare: dict[str, str]) -> None:
    r = run_cli(["logs", "-n", "abc"], bare)
    assert r.returncode == 2, r.stderr
    assert "--lines/-n must be a whole number" in r.stderr and "<class" not in r.stderr, r.stderr


def test_an_unknown_installer_names_the_variable(bare: dict[str, str]) -> None:
    r = run_cli(["env"], {**bare, "AUTO_INFER_INSTALLER": "conda"})
    assert r.returncode == 1 and "where: AUTO_INFER_INSTALLER" in r.stderr, r.stderr


@pytest.mark.parametrize(("what", "says"), [("folder", "is a folder, not a file"), ("latin-1", "not UTF-8 text")])
def test_a_model_config_that_cannot_be_read_says_why_and_what_to_do(bare: dict[str, str], tmp_path: Path,
                                                                    what: str, says: str) -> None:
    config = tmp_path / "models.toml"
    if what == "folder":
        config.mkdir()
    else:
        config.write_bytes('[instance.a.server]\nmodel_path = "/m/caf\xe9"\n'.encode("latin-1"))
    r = run_cli(["serve", "--dry-run"], {**bare, "AUTO_INFER_SGLANG_CONFIG": str(config)})
    assert r.returncode == 1, r.stderr
    assert says in r.stderr and f"where: {config}" in r.stderr and "fix:" in r.stderr, r.stderr
    assert "Errno" not in r.stderr and "codec" not in r.stderr


@pytest.mark.parametrize("argv", [["env"], ["status"], ["status", "--json"], ["logs"], ["stop"], ["--help"],
                                  ["list"], ["help", "serve"]])
def test_read_only_commands_write_nothing(bare: dict[str, str], argv: list[str]) -> None:
    r = run_cli(argv, bare)
    assert r.returncode == 0, r.stderr
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists()


@pytest.mark.parametrize(("name", "value"), [
    ("AUTO_INFER_NET_TIMEOUT", "nan"), ("AUTO_INFER_NET_DEADLINE", "nan"), ("AUTO_INFER_LOCK_TIMEOUT", "inf"),
    ("AUTO_INFER_SUPERVISE_WINDOW", "nan"), ("AUTO_INFER_PROGRESS_INTERVAL", "nan"),
    ("AUTO_INFER_NET_CONNECTIONS", "0"), ("AUTO_INFER_NET_RETRIES", "101"),
    ("AUTO_INFER_LOCK_TIMEOUT", "1e300")])
def test_a_number_that_is_not_finite_or_out_of_range_is_a_user_error(bare: dict[str, str], name: str,
                                                                     value: str) -> None:
    r = run_cli(["env"], {**bare, name: value})
    assert r.returncode == 1, r.stderr
    assert f"{name}={value!r} is not a" in r.stderr and f"where: {name}" in r.stderr and "fix:" in r.stderr, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr


def test_a_closed_pipe_is_a_quiet_exit(bare: dict[str, str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)                      # the reader is gone before the first line is written
    try:
        r = subprocess.run([*CLI, "env"], env=bare, stdout=write_end, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
    finally:
        os.close(write_end)
    assert r.returncode == 0, r.stderr
    assert "BrokenPipe" not in r.stderr and "internal error" not in r.stderr


def test_a_bug_in_an_up_to_date_check_goes_through_the_crash_handler(bare: dict[str, str], tmp_path: Path) -> None:
    """doit catches exceptions raised in uptodate callables and prints a raw traceback; ours do not."""
    script = tmp_path / "graph.py"
    script.write_text(textwrap.dedent('''
        import sys, types
        import time
        from auto_infer.core import errors, settings
        from auto_infer.tasks import doit_main, doit_setup, wiring

        def broken() -> bool:
            raise RuntimeError("a bug in an up-to-date check")

        graph = types.ModuleType("graph")
        graph.DOIT_CONFIG = {**doit_setup.config(settings.load()), "dep_file": ":memory:"}
        graph.task_x = lambda: {"actions": [lambda: None], "uptodate": [wiring.uptodate(broken)]}
        try:
            sys.exit(doit_main.run(graph, ["x"]))
        except BaseException as exc:
            sys.exit(errors.handle(exc, time.monotonic(), lambda: settings.load().state_dir))
    '''))
    r = subprocess.run([sys.executable, str(script)], env=bare, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert not list(tmp_path.glob(":memory:*"))      # doit's dbm backend would leave :memory:.dat here
    assert r.returncode == 3, r.stderr
    assert "internal error: RuntimeError: a bug in an up-to-date check" in r.stderr
    assert "Traceback" not in r.stderr
    logs = list((Path(bare["AUTO_INFER_WORKSPACE_DIR"]) / ".auto-infer").glob("crash-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()


def test_a_crash_quoting_a_proxy_or_a_key_keeps_them_out_of_stderr_and_the_crash_log(bare: dict[str, str],
                                                                                    tmp_path: Path) -> None:
    """A bug's message may quote a proxy (no scheme: ``user:pw@proxy:3128``) or argv a key: masked in both."""
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent('''
        import os, sys, time
        from auto_infer.core import errors, settings
        sys.argv = ["auto-infer", "serve", "--api-key", "Key-val-7777"]
        try:
            raise RuntimeError("cannot reach " + os.environ["HTTPS_PROXY"] + " or https://u:Url-pw-9999@h/")
        except BaseException as exc:
            sys.exit(errors.handle(exc, time.monotonic(), lambda: settings.load().state_dir))
    '''))
    env = dict(bare, HTTPS_PROXY="alice:Proxy-pw/4242@proxy.internal:3128")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "internal error: RuntimeError: cannot reach alice:***@proxy.internal:3128" in r.stderr, r.stderr
    logs = list((Path(bare["AUTO_INFER_WORKSPACE_DIR"]) / ".auto-infer").glob("crash-*.log"))
    assert len(logs) == 1 and "alice:***@proxy.internal:3128" in logs[0].read_text()
    for secret in ("Proxy-pw", "Url-pw-9999", "Key-val-7777"):
        assert secret not in r.stderr + logs[0].read_text(), secret


def test_a_user_error_in_an_up_to_date_check_runs_the_task_which_says_why(bare: dict[str, str]) -> None:
    """No template, no project: install's up-to-date check cannot read a lock; the task then says so."""
    r = run_cli(["install"], bare)
    assert r.returncode == 1, r.stderr
    assert "pixi.lock" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv", [["status", "--bogus"], ["bundle", "frobnicate"], ["bundle", "export"],
                                  ["bundle", "import"], ["bundle", "import", "a", "b"], ["serve", "--json"],
                                  ["srve"], ["logs", "-n", "-5"], ["logs", "-n", "x"], ["stop", ""],
                                  ["logs", ""], ["chat", ""], [""], ["warm", "--rehearse", "--bogus"]])
def test_every_usage_error_is_exit_2_and_writes_nothing(bare: dict[str, str], argv: list[str]) -> None:
    """One parser for every task (bundle's subcommands, serve's options, logs -n): the same exit, the
    same shape of message, and no state: not doit's, not the run lock, not the workspace folder."""
    r = run_cli(argv, bare)
    assert r.returncode == 2, (argv, r.stderr)
    assert r.stderr.startswith("auto-infer: ") and "fix:" in r.stderr and "Traceback" not in r.stderr
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists(), argv


@pytest.mark.parametrize("argv", [["serve", "--help"], ["help", "serve"], ["bundle", "--help"], ["help", "bundle"]])
def test_help_names_every_option_and_writes_nothing(bare: dict[str, str], argv: list[str]) -> None:
    r = run_cli(argv, bare)
    assert r.returncode == 0, r.stderr
    wanted = ["--dry-run", "--json", "--strict", "--verify"] if argv[-1] == "serve" or argv[0] == "serve" else [
        "--since", "--dry-run"]
    assert all(w in r.stdout for w in wanted), r.stdout
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists()


def test_doit_in_the_repo_lists_without_state_and_fails_like_auto_infer(bare: dict[str, str]) -> None:
    """`doit TASK` from the checkout: `list` writes nothing; a user error is the same one message, exit 1."""
    repo = Path(__file__).resolve().parents[1]
    lst = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=repo, env=bare, capture_output=True,
                         text=True, timeout=120)
    assert lst.returncode == 0 and "install" in lst.stdout, lst.stderr
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists()
    r = subprocess.run([sys.executable, "-m", "doit", "template"], cwd=repo, env=bare, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "auto-infer: AUTO_INFER_SGLANG_TEMPLATE_DIR is not set" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_single_step_prints_no_step_marker(bare: dict[str, str]) -> None:
    r = run_cli(["status"], bare)
    assert r.returncode == 0 and ".  status" not in r.stderr, r.stderr


def test_dry_run_is_one_rule_for_every_engine(bare: dict[str, str], tmp_path: Path) -> None:
    """A valid plan exits 0 and lists what this host lacks as warnings (here: a command's executable
    and SGLang's Python, nothing is installed); --strict makes them an error. GPUs are printed as 0,1."""
    config = tmp_path / "models.toml"
    config.write_text('[instance.cmd.control]\ncommand = ["/nonexistent/bin/server", "--port", "{port}"]\n'
                      'gpu_ids = "0,1"\n[instance.cmd.server]\nport = 31001\nserved_model_name = "m"\n'
                      f'[instance.sgl.server]\nport = 31002\nmodel_path = "{tmp_path}"\n')
    env = {**bare, "AUTO_INFER_SGLANG_CONFIG": str(config)}
    r = run_cli(["serve", "--dry-run"], env)
    assert r.returncode == 0, r.stderr
    assert "⚠ the command's executable is not found or not executable: /nonexistent/bin/server" in r.stdout
    assert "⚠ no Python to run SGLang with" in r.stdout and "gpus 0,1 " in r.stdout, r.stdout
    strict = run_cli(["serve", "--dry-run", "--strict"], env)
    assert strict.returncode == 1 and "(--strict: an error)" in strict.stderr, strict.stderr
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists()


def test_help_lists_the_tasks_without_loading_doit_or_the_install_stack(bare: dict[str, str]) -> None:
    """`--help` is the first thing a newcomer runs: it loads only the task list (issue 22: start-up)."""
    probe = ("import sys\nfrom auto_infer.cli import main\nmain(['--help'])\n"
             "heavy = sorted(m for m in sys.modules if m == 'doit' or m.startswith(('doit.', 'rattler', "
             "'auto_infer.install.', 'auto_infer.serve.', 'requests')))\nprint('HEAVY', heavy)\n")
    env = {**bare, "AUTO_INFER_INSTALLER": "no-such-installer"}    # a bad variable does not break --help
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "install " in r.stdout and "status " in r.stdout, r.stdout
    assert "HEAVY []" in r.stdout, r.stdout[-500:]


def test_doits_command_names_are_known_without_loading_doit() -> None:
    from doit.doit_cmd import DoitMain

    from auto_infer.tasks import cmdline

    assert cmdline.COMMANDS == {c.get_name() for c in DoitMain.DOIT_CMDS}


@pytest.mark.parametrize("argv", [["status"], ["logs"], ["env"], ["stop"]])
def test_a_task_with_no_state_and_no_dependencies_runs_without_doit(bare: dict[str, str], argv: list[str]) -> None:
    """`status`, `logs`, `env`, `stop`: doit would only parse and call them (issue 22: start-up)."""
    probe = (f"import sys\nfrom auto_infer.cli import main\ncode = main({argv!r})\n"
             "print('DOIT', sorted(m for m in sys.modules if m == 'doit' or m.startswith('doit.')), code)\n")
    r = subprocess.run([sys.executable, "-c", probe], env=bare, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "DOIT [] 0" in r.stdout, r.stdout[-500:]
    assert not Path(bare["AUTO_INFER_WORKSPACE_DIR"]).exists()


def test_the_same_tasks_still_run_through_doit_in_the_repo(bare: dict[str, str]) -> None:
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "doit", "-f", str(repo / "dodo.py"), "status"], env=bare,
                       capture_output=True, text=True, timeout=120, cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "no instances (run `auto-infer serve`)" in r.stdout, r.stdout


def test_the_graph_loader_gives_doits_tasks_in_doits_order(bare: dict[str, str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """tasks/doit_main.GraphLoader skips doit's source tokenizing (issue 22): the same tasks, names,
    options and order as doit's own ModuleTaskLoader; a creator it cannot honour is refused."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.cmd_run import Run
    from doit.exceptions import InvalidDodoFile
    from doit.loader import task_params

    from auto_infer.tasks import dodo
    from auto_infer.tasks.doit_main import GraphLoader

    for k in [k for k in os.environ if k.startswith("AUTO_INFER_")]:
        monkeypatch.delenv(k)
    for k, v in bare.items():
        monkeypatch.setenv(k, v)

    def tasks(loader: ModuleTaskLoader) -> list[tuple[str, str | None, list[str]]]:
        loader.setup({})
        return [(t.name, t.doc, [p["name"] for p in t.params]) for t in loader.load_tasks(Run, [])]

    theirs, ours = tasks(ModuleTaskLoader(dodo)), tasks(GraphLoader(dodo))
    assert ours == theirs
    assert len(ours) > 10

    @task_params([{"name": "x", "default": 1}])
    def task_odd(x: int) -> dict[str, object]:
        return {"actions": []}

    with pytest.raises(InvalidDodoFile, match="task_odd"):
        GraphLoader({"task_odd": task_odd}).load_tasks(Run, [])


def test_doit_plugins_of_other_packages_are_not_loaded_into_auto_infer(bare: dict[str, str], tmp_path: Path) -> None:
    """doit scans every installed distribution for ``doit.*`` entry points on each run (issue 22:
    15 ms with 70 distributions); auto-infer's commands are its own and skip that scan, doit's own
    CLI in the repo still loads them (the control: the same plugin is seen there)."""
    site = tmp_path / "site"
    info = site / "fakeplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[doit.COMMAND]\nboom = fakeplug_mod:Boom\n")
    mark = tmp_path / "loaded"
    (site / "fakeplug_mod.py").write_text(textwrap.dedent(f"""\
        from doit.cmd_base import Command
        open({str(mark)!r}, "w").write("loaded")
        class Boom(Command):
            name = "boom"
            doc_purpose = "a third-party doit command"
            def execute(self, opt_values, pos_args):
                return 0
        """))
    env = dict(bare, PYTHONPATH=str(site))
    ours = run_cli(["help"], env)
    assert ours.returncode == 0 and "auto-infer list" in ours.stdout, ours.stderr
    assert "boom" not in ours.stdout and not mark.exists()
    repo = Path(__file__).resolve().parents[1]
    theirs = subprocess.run([sys.executable, "-m", "doit", "help"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=120)
    assert "boom" in theirs.stdout and mark.exists(), theirs.stdout + theirs.stderr


def test_doits_state_commands_work_and_dumpdb_is_refused_with_the_way_to_read_the_state(tmp_path: Path) -> None:
    """clean / forget / ignore return None from doit: that is success, not an internal error (forget
    used to change the state and then report a crash). dumpdb reads dbm files, ours is SQLite."""
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws")})
    for args in (["clean"], ["clean", "install"], ["forget"], ["forget", "install"], ["ignore", "install"]):
        r = run_cli(args, env)
        assert r.returncode == 0 and "internal error" not in r.stderr, (args, r.stderr)
    assert "forgetting install" in run_cli(["forget", "install"], env).stdout
    r = run_cli(["dumpdb"], env)
    assert r.returncode == 2 and "internal error" not in r.stderr
    db = tmp_path / "ws" / ".auto-infer" / "doit.sqlite"        # the real path, not $AUTO_INFER_WORKSPACE_DIR
    assert "SQLite" in r.stderr and f"fix:   read it with: sqlite3 {db} 'select" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["clean", "--frob"], ["forget", "--frob", "install"], ["list", "--help"]])
def test_an_option_a_doit_command_lacks_names_that_command(bare: dict[str, str], args: list[str]) -> None:
    """`clean --frob install`: --frob is clean's option, not install's (was "(`TASK`)" or `install`)."""
    r = run_cli(args, bare)
    assert r.returncode == 2 and f"not recognized (`{args[0]}`)" in r.stderr, r.stderr
    assert f"`auto-infer help {args[0]}` lists its options" in r.stderr


def test_commands_without_doit_state_write_nothing_in_the_working_folder(tmp_path: Path) -> None:
    """env, status and both at once (doit runs them with `--db-file :memory:`): a dbm backend would
    leave :memory:.dat/.dir/.bak in the working folder, as once committed at the repo root."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws")})
    for args in (["env"], ["status"], ["env", "status"], ["forget", "install"], ["list"]):
        r = run_cli(args, env, cwd=cwd)
        assert r.returncode == 0 and "internal error" not in r.stderr, (args, r.stderr)
        assert sorted(p.name for p in cwd.iterdir()) == [], args
