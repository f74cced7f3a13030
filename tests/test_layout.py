"""The package's shape (issue 11): no import cycles, layers only import downwards, small modules.

Imports are read with ``ast`` (function-level imports count too: a lazy import is still a
dependency). ``tasks/`` is installed as ``auto_infer.tasks``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 300
# a package may import only from the packages listed for it (and itself)
LAYERS = {
    "core": set(),
    "install": {"core", "weights"},
    "serve": {"core", "weights"},
    "weights": {"core"},
    "demo": {"core", "install"},
    "k8s": {"core", "serve"},
    "tasks": {"core", "install", "serve", "demo", "k8s", "tasks", "weights"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / "auto_infer").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        found[".".join(rel.parts).removesuffix(".__init__")] = path
    for path in sorted((REPO / "tasks").glob("*.py")):
        found["auto_infer.tasks" + ("" if path.stem == "__init__" else f".{path.stem}")] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("auto_infer.") and name != "auto_infer":
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_only_import_downwards() -> None:
    wrong = []
    for mod, deps in graph().items():
        pkg = package_of(mod)
        if pkg not in LAYERS:
            continue          # auto_infer/__init__, __main__, cli: the top
        for dep in deps:
            other = package_of(dep)
            if other is not None and other != pkg and other not in LAYERS[pkg]:
                wrong.append(f"{mod} imports {dep}")
    assert wrong == []


def test_no_module_over_300_lines() -> None:
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_package_is_shipped() -> None:
    """pyproject lists the packages by hand (tasks/ is mapped into auto_infer): none may be left out."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "auto_infer").rglob("__init__.py")}
    assert found - listed == set()


# Facts spelled in one place (issue 19): Settings derives these paths; nothing else rebuilds them,
# and only core/settings.py reads the AUTO_INFER_* variables (the demo and supervise included).
BANNED = {
    r'project_dir\s*/\s*"pixi\.(lock|toml)"': "settings.lock_file / settings.pixi_toml",
    r"env_prefix\s*/": "a derived path of Settings (env_python, env_bin, conda_meta)",
    r'project_dir\s*/\s*"\.pixi': "a derived path of Settings (pixi_config, project_state_dir, env_prefix)",
    r'(os\.environ\.get|os\.getenv|getenv)\(\s*[A-Z_]*VAR\b': "a Settings field",
    r'(os\.environ\.get|getenv)\(\s*"AUTO_INFER_': "a Settings field",
    r'os\.environ\[\s*"AUTO_INFER_[A-Z_]+"\s*\](?!\s*=)': "a Settings field",
    r'"logs/sglang"|"logs"\s*/\s*"sglang"': "settings.server_logs(engine)",
}


def test_facts_are_spelled_only_in_settings() -> None:
    import re

    found = []
    for mod, path in modules().items():
        if mod in ("auto_infer.core.settings", "auto_infer.core.variables"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{path.relative_to(REPO)}:{n}: {line.strip()}  (use {use})"
                      for pattern, use in BANNED.items() if re.search(pattern, line)]
    assert found == []


def test_the_banned_spellings_are_found() -> None:
    import re

    lines = ['lock = settings.project_dir / "pixi.lock"', "py = s.env_prefix / 'bin' / 'python'",
             'os.environ.get("AUTO_INFER_LLAMACPP_VENV", "")', 'os.environ["AUTO_INFER_X"]']
    assert all(any(re.search(p, line) for p in BANNED) for line in lines)
    assert not any(re.search(p, 'os.environ["AUTO_INFER_WORKSPACE_DIR"] = ws') for p in BANNED)


# Tests as a codebase (issue 19): helpers live in tests/helpers/, fixtures in tests/conftest.py; a
# test module does not import another test module. These still do (their owners move them next);
# the list may only shrink.
STILL_IMPORTING_TESTS = {
    ("test_bundle_tamper", "test_bundle"), ("test_importer", "test_bundle"),
    ("test_bundle_weights", "test_bundle"), ("test_bundle_weights", "test_weights"),
    ("test_tutorial_air_gap", "test_bundle"), ("test_downloads_view", "test_downloads"),
    ("test_k8s_defects", "test_k8s_semantics"), ("test_k8s_outdir", "test_k8s_semantics"),
    ("test_reliability_hostile", "test_output_paths"),
}


def test_no_test_module_imports_another() -> None:
    found = set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
                found.add((path.stem, (node.module or "").split(".")[1]))
    assert found - STILL_IMPORTING_TESTS == set()
