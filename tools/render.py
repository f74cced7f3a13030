"""Compose overrides, env.example and the docs' env table, rendered from one place.

The sources are the jinja2 templates in ``compose/templates/`` and the env contract:
:data:`auto_infer.core.settings.VARIABLES` plus the few variables that only compose or the boot hook
read (:data:`EXTRA`). The outputs are committed. ``python -m tools.render`` writes them
again, ``--check`` lists the stale ones (a test runs it), ``--service NAME --out DIR`` renders the
compose files for a compose service other than infer-dev's ``stage-2``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text
from auto_infer.core.settings import PROXY_VARS, VARIABLES

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "compose" / "templates"
SERVICE = "stage-2"   # infer-dev's service (dockers/infer-dev/docker-compose.yml)
COMPOSE_FILES = ("docker-compose.sglang-template.yml", "docker-compose.offline.yml", "docker-compose.supervise.yml",
                 "docker-compose.cache-mount.yml", "docker-compose.gpu.yml", "env.example")
BLOCK_FILES = ("docs/design.md", "README.md")   # files holding a rendered block between the markers below
BEGIN = "<!-- BEGIN env-table: rendered by `python -m tools.render`, do not edit -->"
END = "<!-- END env-table -->"

# Container paths compose mounts; the tool is told the same paths, so what is mounted is used.
MOUNTS = {"AUTO_INFER_WORKSPACE_DIR": "/offline-data",
          "AUTO_INFER_SGLANG_TEMPLATE_DIR": "/sglang-template",
          "AUTO_INFER_SGLANG_CACHE_ROOT": "/offline-data/.cache/sglang-infer"}

# name -> (default, one line, who reads it)
EXTRA: dict[str, tuple[str, str, str]] = {
    "AUTO_INFER_BOOT_TIMEOUT": (
        "7200",
        "Seconds the boot hook lets `auto-infer boot` run before stopping it (exit 124).",
        "hook",
    ),
    "AUTO_INFER_BOOT_BACKGROUND": (
        "0",
        "1: the boot hook runs boot detached and returns at once (outcome in logs/boot.log).",
        "hook",
    ),
    "HOST_VOLUME_SGLANG_TEMPLATE_DIR": (
        "./sglang-template",
        "Host folder with the downloaded template (pixi.toml + pixi.lock), mounted read-only at "
        "AUTO_INFER_SGLANG_TEMPLATE_DIR. Required.",
        "compose",
    ),
    "HOST_VOLUME_WORKSPACE_DIR": (
        "./.container/workspace",
        "Host folder mounted at AUTO_INFER_WORKSPACE_DIR: project, environment, logs, reports, state.",
        "compose",
    ),
    "HOST_VOLUME_SGLANG_CACHE_ROOT": (
        "./.container/workspace/.cache/sglang-infer",
        "Opt-in (docker-compose.cache-mount.yml): a host folder of its own mounted at "
        "AUTO_INFER_SGLANG_CACHE_ROOT for the package caches; installs then copy instead of hard-linking. "
        "By default the caches live in the workspace.",
        "compose",
    ),
    "HOST_VOLUME_LLM_MODELS": (
        "./llm-models",
        "Host folder with model weights, mounted read-only at /llm-models (the model configs point there).",
        "compose",
    ),
    "SGLANG_SHM_SIZE": (
        "32gb",
        "Shared memory for the container: NCCL needs more than Docker's 64 MB for tensor parallel.",
        "compose",
    ),
}


@dataclass(frozen=True)
class Var:
    name: str
    default: str
    doc: str
    scope: str          # "tool" (auto-infer reads it), "hook" (the boot hook), "compose" (compose only)

    @property
    def derived(self) -> bool:
        """The default is computed from another variable (the tool does that when it is empty)."""
        return "${" in self.default

    @property
    def compose_default(self) -> str:
        """What the container gets when the variable is unset on the host and in .env."""
        if self.name in MOUNTS:
            return MOUNTS[self.name]
        return "" if self.derived else self.default


def variables() -> list[Var]:
    tool = [Var(n, d, doc, "tool") for n, (d, doc) in VARIABLES.items()]
    return tool + [Var(n, d, doc, scope) for n, (d, doc, scope) in EXTRA.items() if n not in VARIABLES]


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                              autoescape=False)


def env_table() -> str:
    rows = ["| variable | default | read by | what it does |", "|---|---|---|---|"]
    for v in variables():
        default = f"`{v.default}`" if v.default else "(empty)"
        doc = v.doc.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{v.name}` | {default} | {v.scope} | {doc} |")
    return "\n".join(rows) + "\n"


def render_compose(service: str = SERVICE) -> dict[str, str]:
    """File name -> text for the files under compose/."""
    env = _env()
    context = {"service": service, "vars": variables(), "mounts": MOUNTS, "proxies": PROXY_VARS}
    return {name: env.get_template(f"{name}.j2").render(**context) for name in COMPOSE_FILES}


def replace_block(text: str, block: str, where: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise UserError(f"{where} has no place for the rendered env table", where=where,
                        fix=f"put these two lines where the table goes:\n{BEGIN}\n{END}")
    return pattern.sub(lambda _m: f"{BEGIN}\n{block}{END}", text, count=1)


def outputs(service: str = SERVICE, out: Path | None = None) -> dict[Path, str]:
    """Every rendered file (path -> wanted text). With ``out``, only the compose files, there."""
    base = out or (REPO / "compose")
    wanted = {base / name: text for name, text in render_compose(service).items()}
    if out is None:
        table = env_table()
        for rel in BLOCK_FILES:
            path = REPO / rel
            if path.is_file():
                wanted[path] = replace_block(path.read_text(), table, rel)
    return wanted


def stale(wanted: dict[Path, str]) -> list[Path]:
    return [p for p, text in wanted.items() if not p.is_file() or p.read_text() != text]


def write(wanted: dict[Path, str]) -> list[Path]:
    changed = stale(wanted)
    for path in changed:
        atomic_write_text(path, wanted[path])
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only say which rendered files are stale (exit 1 if any)")
    ap.add_argument("--service", default=SERVICE, help=f"compose service to override (default {SERVICE})")
    ap.add_argument("--out", type=Path, help="write the compose files to this folder instead of compose/")
    args = ap.parse_args(argv)
    try:
        wanted = outputs(args.service, args.out.resolve() if args.out else None)
    except UserError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    if args.check:
        old = stale(wanted)
        for path in old:
            print(f"stale: {path} (run `python -m tools.render`)", file=sys.stderr)
        return 1 if old else 0
    for path in write(wanted):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
