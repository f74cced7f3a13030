"""Task creators for template → warm → install → check: a few lines each, logic elsewhere."""

from __future__ import annotations

from typing import Any

from auto_infer import __version__
from auto_infer.core.errors import UserError
from auto_infer.core.progress import say
from auto_infer.tasks.wiring import (
    VERIFY,
    CommandLine,
    action,
    flag,
    no_doit_state,
    settings,
    takes_run_lock,
    uptodate,
)


def _installer_config() -> Any:
    from doit.tools import config_changed  # when the graph is built, not for `--help`

    s = settings()
    return config_changed({"tool": __version__, "installer": s.installer, "env": s.pixi_env,
                           "platform": s.platform, "prefix": str(s.env_prefix)})


def _lock_deps() -> list[str]:
    s = settings()
    return [str(s.lock_file), str(s.pixi_toml)]


# the install modules are imported when a task's action or up-to-date check runs, not when the
# graph is built: `--help`, `status` and every other command load only what they use

def _do_template() -> None:
    from auto_infer.install import environment, template

    p = template.copy(settings())
    for rel in p.skipped:
        say(f"  not following symlink out of the template: {rel}")
    say(f"  template: {p.action}: {p.reason}")
    environment.warn_uncacheable(settings())


@takes_run_lock
def task_template() -> dict[str, Any]:
    """Copy the Pixi template (pixi.toml + pixi.lock) into the project folder."""
    return {"actions": [action(_do_template)], "targets": _lock_deps(),
            "uptodate": [uptodate(_template_uptodate)], "verbosity": 2}


def _template_uptodate() -> bool:
    from auto_infer.install import template

    return not template.needs_work(settings())


def _warm_uptodate() -> bool:
    from auto_infer.install import environment, importer, models
    from auto_infer.install import manifest as manifests

    s = settings()
    try:
        locked = environment.locked_env(s)
    except UserError:
        return False
    manifest = manifests.read_or_none(s)
    return (manifest is not None and manifest.installer == s.installer
            and importer.done(s, locked, s.installer) is None and models.complete(s, hub_only=True))


def _warm_dry_run(values: dict[str, Any]) -> int:
    """`warm --dry-run`: the plan alone, without doit (not even `template` runs: nothing is written)."""
    from auto_infer.install import environment

    return environment.warm_dry_run(settings())


def _warm(dry_run: bool = False) -> Any:
    from auto_infer.install import environment

    if dry_run:                     # `doit warm --dry-run` in the repo (after template: doit's order)
        environment.warm_dry_run(settings())
        return None
    return environment.warm(settings())


def _install(verify: bool = False) -> str:
    from auto_infer.install import environment

    return environment.install(settings(), verify)


WARM_PARAMS = [flag("dry-run", "say what warm would download (sizes, what the cache holds, free space); "
                    "download and write nothing"),
               flag("rehearse", "then prove the cache alone installs the lock (`warm rehearse`)")]


@CommandLine(then={"rehearse": "rehearse"}, alone="dry_run", run_alone=_warm_dry_run)
@takes_run_lock
def task_warm() -> dict[str, Any]:
    """Online: fetch every artifact of pixi.lock into the cache root; write the cache manifest."""
    return {"actions": [action(_warm)],
            "task_dep": ["template"], "file_dep": _lock_deps(),
            "uptodate": [_installer_config(), uptodate(_warm_uptodate)], "verbosity": 2, "params": WARM_PARAMS}


@takes_run_lock
def task_install() -> dict[str, Any]:
    """Offline-capable: install the environment from the caches only (refuses if they can't)."""
    return {"actions": [action(_install)],
            "task_dep": ["template"], "file_dep": _lock_deps(),
            "uptodate": [_installer_config(), uptodate(_install_uptodate)],
            "verbosity": 2, "params": VERIFY}


def _install_uptodate(task: Any) -> bool:
    """Healthy and every weight file here; `install --verify` always runs (to hash the weights)."""
    from auto_infer.install import models

    return not (task.options or {}).get("verify") and _healthy() and models.complete(settings())


def _healthy() -> bool:
    from auto_infer.install import health

    return health.health_check(settings()) is None


def _do_check() -> None:
    from auto_infer.install import check
    from auto_infer.serve import config

    data = check.run(settings(), config.check_modules(settings()))
    print(check.summary(data), flush=True)


@takes_run_lock
def task_check() -> dict[str, Any]:
    """Import check inside the environment: Python, torch, sglang, CUDA, cuDNN versions."""
    return {"actions": [action(_do_check)], "task_dep": ["install"], "targets": [str(settings().check_path)],
            "verbosity": 2}


def _do_env() -> None:
    for name, value in settings().exports():
        print(f"export {name}={_shell_quote(value)}")


def _shell_quote(value: str) -> str:
    import shlex
    return shlex.quote(value)


def _do_rehearse() -> None:
    from auto_infer.install import rehearse
    from auto_infer.serve import config

    say(rehearse.run(settings(), config.check_modules(settings())).line())


@takes_run_lock
def task_rehearse() -> dict[str, Any]:
    """Online: prove the cache alone installs this lock (scratch project, no network, then removed)."""
    return {"actions": [action(_do_rehearse)], "task_dep": ["warm"], "verbosity": 2}


@no_doit_state
def task_env() -> dict[str, Any]:
    """Print the resolved env-var contract as `export` lines (eval "$(auto-infer env)")."""
    return {"actions": [action(_do_env)], "verbosity": 2}


def _do_lock() -> None:
    from auto_infer.install import pixi_lock
    pixi_lock.lock_template(settings())


@takes_run_lock
def task_lock() -> dict[str, Any]:
    """Where pixi and the network are: run `pixi lock` for the template (once; the lock travels)."""
    return {"actions": [action(_do_lock)], "verbosity": 2}
