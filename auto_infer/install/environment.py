"""warm and install, doit-free: lock, re-check, prove the cache, install, record last.

The install record, the installing marker and the health check live in
:mod:`auto_infer.install.health`; this module decides and runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import disk_full_is_a_user_error, on_container_layer, read_json, same_filesystem
from auto_infer.core.progress import say, step
from auto_infer.core.runlock import exclusive
from auto_infer.core.settings import Settings, current_platform
from auto_infer.install import backends, cache, health, importer, lockfile, models, template
from auto_infer.install import manifest as manifests
from auto_infer.install.health import Kind, Reason, health_check, locked_env

__all__ = ["Kind", "Reason", "health_check", "install", "locked_env", "warm", "warm_dry_run", "warn_uncacheable"]


def _warn_filesystems(settings: Settings, warm: bool) -> None:
    for label, path in (("cache root", settings.cache_root), ("project", settings.project_dir)):
        if warm and on_container_layer(path):
            say(f"⚠ WARNING: the {label} {path} is on the container's own writable layer, not a mounted "
                "volume: it vanishes with the container. Mount a volume there (see compose/).")
    if not same_filesystem(settings.cache_root, settings.project_dir):
        say(f"⚠ WARNING: cache root and project are on different filesystems: files are copied, not "
            f"hard-linked (slower, twice the disk). Put {settings.cache_root} and {settings.project_dir} "
            "on one volume.")


def _warn_platform(settings: Settings) -> None:
    here = current_platform()
    if settings.platform != here:
        say(f"⚠ WARNING: installing for {settings.platform} (AUTO_INFER_PLATFORM) on a {here} machine: "
            "the environment's programs will not run here. Unset AUTO_INFER_PLATFORM to use this machine's.")


def warn_uncacheable(settings: Settings) -> None:
    """At `template`: name the lock entries that warm and install will refuse (a lock error: warm says it)."""
    try:
        bad = lockfile.non_wheel(locked_env(settings))
    except UserError:
        return
    if bad:
        say(f"⚠ WARNING: {lockfile.uncacheable_text(bad)}\n  warm and install will refuse this lock; "
            f"fix: {lockfile.UNCACHEABLE_FIX}")


def _drop_unreadable_records(settings: Settings) -> None:
    """rattler writes conda-meta records in place: a run cut short (full disk, kill) can leave one
    empty, and then rattler cannot even read the prefix (parse error, once a segfault). Remove
    those records (of any package, locked or not) so their packages are linked again."""
    for rec in sorted(settings.conda_meta.glob("*.json")):
        if not isinstance(read_json(rec), dict):
            rec.unlink(missing_ok=True)
            say(f"  removed an unreadable conda-meta record (an earlier run was cut short): {rec.name}")


@contextmanager
def _installing(settings: Settings, why: str) -> Iterator[None]:
    """The marker around the installer: its outcome is written if the install does not finish."""
    _drop_unreadable_records(settings)
    health.begin(settings, why)
    try:
        yield
    except BaseException as exc:
        health.mark_outcome(settings, exc)
        raise


def warm(settings: Settings) -> dict[str, Any]:
    """Online: fetch everything the lock names into the cache root (the importer's reader is the
    download), fill the package cache, install, audit, write the manifest last."""
    backend = backends.get(settings.installer)
    with exclusive(settings.install_runlock_path, "warm", settings.runlock_timeout):
        locked = locked_env(settings)
        lockfile.refuse_uncacheable(locked, "warm")
        _warn_platform(settings)
        _warn_filesystems(settings, warm=True)
        earlier = manifests.read_or_none(settings)
        from auto_infer.install import fetchplan  # warm only: an offline install plans no fetch
        plan = fetchplan.make(settings, locked, models.plan(settings))
        for line in plan.lines():
            say(line)
        plan.check()
        with step(f"warm: {len(locked.conda)} conda + {len(locked.pypi)} PyPI artifacts with {backend.name}") as s, \
                importer.cache_writes(settings.cache_root):
            with importer.filling(settings, locked, s) as filling:    # each archive extracted once it is here
                fetched = backend.fetch(settings, locked, s, filling.ready)  # verified and placed by fetch.py
                downloads = f"{s.detail}; " if fetched and s.detail else ""  # the downloads' summary, kept
                filling.finish()
            reason = health_check(settings, locked)
            remove = health.removed_pypi(settings, locked)
            # filled, the cache is final unless the installer fills it: then audit it while it links
            with nullcontext() if backend.fills_cache else cache.start_audit(settings, locked.conda) as conda_audit:
                with _installing(settings, "warm"):
                    backend.install(settings, locked, s, online=True, repair=bool(reason and reason.repair),
                                    remove_pypi=remove)
                health.finish(settings, locked, backend.name, backend.version())
                importer.audit_or_refuse(settings, locked, backend.name, "warm", conda_audit)
            manifest = manifests.build(settings, locked, backend.name, backend.version(), fetched)
            manifest["models"] = list(earlier.models) if earlier else []
            importer.commit(settings, manifest)
            s.note(f"{downloads}manifest {settings.manifest_path}")
        with disk_full_is_a_user_error(settings.hub_cache):
            return models.warm(settings, manifest, plan.hub)


def warm_dry_run(settings: Settings) -> int:
    """`warm --dry-run`: what warm would fetch, what the cache holds, the free space; nothing is
    downloaded or written. Exit 1 (a UserError) when warm would refuse for want of space. The lock
    is the one warm would use: the template's when `template` would copy it first."""
    source = settings
    if settings.template_dir is not None and template.needs_work(settings):
        source = replace(settings, project_dir=settings.template_dir)
    locked = locked_env(source)
    lockfile.refuse_uncacheable(locked, "warm")
    from auto_infer.install import fetchplan
    plan = fetchplan.make(settings, locked, models.plan(settings))
    print("\n".join(plan.lines()), flush=True)
    plan.check()
    return 0


def install(settings: Settings, verify: bool = False) -> str:
    """Offline-capable: refuse before touching anything unless the cache can do it all (the
    model weights included: sizes, and sha256 with ``verify``)."""
    backends.check(settings.installer)
    with exclusive(settings.install_runlock_path, "install", settings.runlock_timeout):
        locked = locked_env(settings)
        models.check(settings, verify)
        reason = health_check(settings, locked)
        if reason is None:
            say(f"✓ install: {settings.env_prefix} already matches pixi.lock; nothing to do")
            return "up to date"
        lockfile.refuse_uncacheable(locked, "install")
        with cache.start_audit(settings, locked.conda) as conda_audit:  # on the other cores while the installer loads
            backend = backends.get(settings.installer)
            cache.preflight(settings, locked, backend.name, conda_audit)
        _warn_platform(settings)
        _warn_filesystems(settings, warm=False)
        say(f"  install needed: {reason}")
        with step(f"install: {len(locked.conda)} conda + {len(locked.pypi)} PyPI packages from the cache "
                  f"with {backend.name}, offline") as s, disk_full_is_a_user_error(settings.env_prefix):
            remove = health.removed_pypi(settings, locked)
            with _installing(settings, reason.text):
                backend.install(settings, locked, s, online=False, repair=reason.repair, remove_pypi=remove)
            health.finish(settings, locked, backend.name, backend.version())
            after = health_check(settings, locked, files=False)   # the cache was audited: records, not files
            if after is not None:
                settings.install_record.unlink(missing_ok=True)
                raise UserError(f"the environment is still not healthy after installing: {after}",
                                where=str(settings.env_prefix), fix=f"see the install log: {settings.install_log}")
            s.note(f"{settings.env_prefix}")
        return reason.text
