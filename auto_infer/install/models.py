"""The weights in warm and install: fetch (online) into the manifest, check (offline) before installing.

The model config (``AUTO_INFER_SGLANG_CONFIG`` with the overrides) says which instance uses which
weights; without a model config there is nothing to fetch or check. The manifest's ``models``
section keeps one entry per source (repo@revision with its patterns, or folder), so a cache can
serve several configs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auto_infer.core.errors import UserError
from auto_infer.core.progress import say, step
from auto_infer.core.settings import Settings
from auto_infer.core.tomlfile import apply_overrides, read_toml
from auto_infer.install import manifest as manifests
from auto_infer.weights import audit, spec

if TYPE_CHECKING:     # the online side (the Hub client, the fetch plan) loads only for warm
    from auto_infer.install.fetchplan import Part
    from auto_infer.weights import fetch


def sources(settings: Settings) -> dict[str, spec.Source]:
    path = settings.config_path
    if not path.is_file():
        return {}
    return spec.configured(apply_overrides(read_toml(path), settings.overrides), path)


def _tables(settings: Settings, found: dict[str, spec.Source], key: str) -> str:
    names = ", ".join(f"[instance.{n}.model]" for n, x in found.items() if x.key == key)
    return f"{settings.config_path}: {names}"


def plan(settings: Settings) -> list[tuple[str, Part, fetch.Resolved | None]]:
    """Each Hub source as the fetch plan sees it: (key, sizes from the Hub's file list, resolved).
    A Hub that does not answer leaves its size unknown here; its fetch, after the packages', says why."""
    from auto_infer.install.fetchplan import Part
    from auto_infer.weights import fetch

    try:
        found = sources(settings)
    except UserError:
        return []                   # warm's weights step says what is wrong with the model config
    out: list[tuple[str, Part, fetch.Resolved | None]] = []
    for key, source in {s.key: s for s in found.values() if s.kind == spec.HUB}.items():
        try:
            r = fetch.resolve(source, _tables(settings, found, key))
        except UserError as exc:
            why = exc.what.splitlines()[0]
            out.append((key, Part(f"weights {source.describe()} (size unknown: {why})", settings.hub_cache,
                                  0, 0, 0, 1), None))
            continue
        kept = r.have(settings.hub_cache) + r.partial(settings.hub_cache)
        out.append((key, Part(f"weights {r.label}", settings.hub_cache, r.size, kept, len(r.wanted)), r))
    return out


def warm(settings: Settings, manifest: dict[str, Any], resolved: dict[str, fetch.Resolved] | None = None
         ) -> dict[str, Any]:
    """Fetch every Hub source (record every visible folder); rewrite the manifest with them.
    ``resolved``: the Hub sources the fetch plan resolved already (by key)."""
    from auto_infer.weights import fetch

    found = sources(settings)
    wanted = {s.key: s for s in found.values()}
    if not wanted:
        say(f"  weights: no [instance.*.model] in {settings.config_path} (or no such file): none fetched")
        return manifest
    entries = {m["key"]: m for m in manifest.get("models", []) if isinstance(m, dict) and "key" in m}
    for key, source in wanted.items():
        if source.kind == spec.HUB:
            with step(f"warm: weights {source.describe()} into {settings.hub_cache}") as s:
                entry = fetch.fetch_hub(source, settings.hub_cache, _tables(settings, found, key),
                                        (resolved or {}).get(key), s, settings.net.progress_every)
                s.note(f"commit {entry['commit'][:12]}, {len(entry['files'])} files, "
                       f"{audit.human(entry['total_size'])}")
        else:
            folder = fetch.record_folder(source)
            if folder is None:
                say(f"  weights: folder {source.path} is not here: not recorded (install and serve check it)")
                continue
            entry = folder
            say(f"  weights: folder {source.path}: {len(entry['files'])} files, {audit.human(entry['total_size'])}")
        entries[key] = entry
    manifest = {**manifest, "models": [entries[k] for k in sorted(entries)]}
    manifests.write(settings, manifest)
    return manifest


def check(settings: Settings, verify: bool = False) -> None:
    """Every weight file of every enabled instance here, whole; else a UserError before anything runs.

    A model config that does not load is serve's to report (install's job is the environment)."""
    try:
        found = sources(settings)
    except UserError as exc:
        say(f"  weights: not checked, the model config does not load ({exc.what.splitlines()[0]}); serve will say why")
        return
    if not found:
        return
    checked = audit.check(settings, found, str(settings.config_path), verify)
    how = "size and sha256" if verify else "size"
    labels = sorted({r.label for r in checked.values()})
    say(f"  weights: {len(labels)} model(s) complete ({how} of every file): {'; '.join(labels)}")


def complete(settings: Settings, hub_only: bool = False) -> bool:
    """For the up-to-date checks: every source of the config is in the manifest and whole (warm:
    ``hub_only``, as a folder on a disk the online machine lacks is checked at install and serve)."""
    try:
        found = {n: s for n, s in sources(settings).items() if s.kind == spec.HUB or not hub_only}
        models = audit.manifest_models(settings)
        if any(s.kind == spec.HUB and s.key not in models for s in found.values()):
            return False
        audit.check(settings, found, str(settings.config_path))
    except Exception:  # noqa: BLE001 - any problem: not up to date; warm itself says why
        return False
    return True
