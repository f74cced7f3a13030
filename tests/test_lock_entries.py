"""Lock entries beyond "conda package + wheel URL" (issue 10, points 2, 3, 4; issue 11 messages).

Locks are made with the real channel builder (auto_infer.demo.channel) and served on 127.0.0.1;
dev-dockers' own root lock (path entries + sdists) is run through template + warm + install."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from auto_infer.core.errors import UserError
from auto_infer.core.net import free_port
from auto_infer.core.settings import current_platform, load
from auto_infer.demo import channel, mirror
from auto_infer.install import cache, environment, lockfile
from tests.helpers import clean_env, run_cli

ROOT_LOCK = Path("/work/scratch/devdockers/locks/root/pixi.lock")
DEAD = "http://127.0.0.1:9"       # any egress attempt fails at once
NEVER = ("check the network", "run `auto-infer warm`", "Traceback", "internal error")


def _env(tmp_path: Path, template: Path, **extra: str) -> dict[str, str]:
    ws = tmp_path / "ws"
    return clean_env({"AUTO_INFER_WORKSPACE_DIR": str(ws), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
                      "AUTO_INFER_SGLANG_PROJECT_DIR": str(ws / "project"),
                      "AUTO_INFER_SGLANG_CACHE_ROOT": str(ws / "cache"), "AUTO_INFER_INSTALLER": "rattler",
                      "HOME": str(tmp_path / "home"), **extra})


def _build(tmp_path: Path, conda: list[channel.CondaSpec], wheels: list[channel.WheelSpec],
           platform: str = "linux-64") -> tuple[channel.BuiltChannel, int]:
    port = free_port()
    built = channel.build(tmp_path / "chan", f"http://127.0.0.1:{port}", conda, wheels, platform=platform)
    return built, port


def _add_pypi(lock: Path, entries: list[tuple[str, str, str]]) -> None:
    """Add PyPI entries (name, version, location) as pixi writes them: a reference in the (only)
    environment's platform list, and the entry in ``packages:`` (py-rattler cannot edit a lock it read)."""
    lines = lock.read_text().splitlines()
    at = lines.index("packages:")
    refs = [f"      - pypi: {loc}" for _, _, loc in entries]
    body = [f"- pypi: {loc}\n  name: {name}\n  version: '{version}'" for name, version, loc in entries]
    lock.write_text("\n".join(lines[:at] + refs + lines[at:] + body) + "\n")


def _tool() -> channel.CondaSpec:
    return channel.CondaSpec("cuda-tool", "12.6", {"bin/cuda-tool": b"#!/bin/sh\necho tool\n"})


# ---- point 2: a conda-only lock (no python, no PyPI) -------------------------------------------

def test_conda_only_lock_without_python_warms_installs_and_checks(tmp_path: Path) -> None:
    built, port = _build(tmp_path, [_tool()], [])
    env = _env(tmp_path, built.project, AUTO_INFER_CHECK_MODULES="none")
    with mirror.Mirror(built.root, port):
        r = run_cli(["warm"], env)
    assert r.returncode == 0, r.stderr
    prefix = load(env).env_prefix
    assert (prefix / "bin" / "cuda-tool").is_file() and not (prefix / "bin" / "python").exists()
    fresh = dict(env, AUTO_INFER_SGLANG_PROJECT_DIR=str(tmp_path / "fresh"))     # offline, from the cache
    r = run_cli(["install"], dict(fresh, HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD, NO_PROXY=""))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fresh" / ".pixi" / "envs" / "default" / "bin" / "cuda-tool").is_file()
    r = run_cli(["check"], fresh)
    assert r.returncode == 0, r.stderr
    assert "no Python" in r.stdout and "cannot be checked" in r.stdout
    assert json.loads(load(fresh).check_path.read_text())["python"] is None
    r = run_cli(["check"], dict(fresh, AUTO_INFER_CHECK_MODULES="torch"))     # asks for modules
    assert r.returncode == 1 and "no Python" in r.stderr and "AUTO_INFER_CHECK_MODULES=none" in r.stderr
    assert not any(bad in r.stderr for bad in NEVER)


# ---- point 3: path, sdist and git entries; relative wheel paths ------------------------------

@pytest.mark.skipif(not ROOT_LOCK.is_file(), reason="the dev-dockers root lock is not here")
def test_devdockers_root_lock_names_uncacheable_entries_from_another_folder(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    shutil.copyfile(ROOT_LOCK, template / "pixi.lock")
    (template / "pixi.toml").write_text('[workspace]\nname = "dev-dockers"\nchannels = ["conda-forge"]\n'
                                        'platforms = ["linux-64"]\n')
    env = _env(tmp_path, template, AUTO_INFER_PLATFORM="linux-64", HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD)
    wants = ("dev-dockers 0.1.0: a local source tree", "pei-docker 1.2.6: a local source tree",
             "antlr4-python3-runtime 4.9.3: an sdist", "proxy-tools 0.1.0: an sdist", "build a wheel")
    r = run_cli(["template"], env, cwd="/tmp")
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stderr and all(w in r.stderr for w in wants), r.stderr
    r = run_cli(["warm"], env, cwd="/tmp")
    assert r.returncode == 1, r.stderr
    assert all(w in r.stderr for w in wants) and "<dynamic>" not in r.stderr, r.stderr
    assert not any(bad in r.stderr for bad in NEVER), r.stderr
    load(env).wheel_dir.mkdir(parents=True)           # this made `install` exit 3 (IsADirectoryError)
    r = run_cli(["install"], env, cwd="/tmp")
    assert r.returncode == 1 and all(w in r.stderr for w in wants), r.stderr
    assert not any(bad in r.stderr for bad in NEVER), r.stderr
    pei = next(a for a in lockfile.read(template / "pixi.lock", "default", "linux-64").pypi if a.name == "pei-docker")
    assert (pei.version, pei.source, pei.location) == ("1.2.6", "tree", "./extern/tracked/PeiDocker")


def test_relative_wheel_path_resolves_against_the_project_from_any_folder(tmp_path: Path) -> None:
    built, port = _build(tmp_path, [channel.python_spec()], [])
    local = channel.build_wheel(built.project / "wheels", channel.WheelSpec(
        "local-pkg", "1.0", {"local_pkg/__init__.py": b"__version__ = '1.0'\n"}))
    _add_pypi(built.project / "pixi.lock", [("local-pkg", "1.0", f"./wheels/{local.name}")])
    env = _env(tmp_path, built.project, AUTO_INFER_CHECK_MODULES="local_pkg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with mirror.Mirror(built.root, port):
        r = run_cli(["warm"], env, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert (load(env).wheel_dir / local.name).is_file()
    r = run_cli(["check"], env, cwd=elsewhere)
    assert r.returncode == 0 and "local_pkg 1.0" in r.stdout, r.stderr


def test_tree_git_and_sdist_entries_are_refused_with_their_versions(tmp_path: Path) -> None:
    built, port = _build(tmp_path, [channel.python_spec()], [])
    _add_pypi(built.project / "pixi.lock", [("my-tree", "0.4", "./src/my-tree"),
                                            ("from-git", "2.1", "git+https://user:tok3n@git.example/x.git@abc"),
                                            ("an-sdist", "3.0", f"http://127.0.0.1:{port}/wheels/an_sdist-3.0.tar.gz")])
    env = _env(tmp_path, built.project)
    load(env).wheel_dir.mkdir(parents=True)      # an existing wheel folder made these crash (exit 3)
    with mirror.Mirror(built.root, port) as m:
        r = run_cli(["warm"], env)
        assert m.requests == []                          # refused before anything was fetched
    assert r.returncode == 1, r.stderr
    for want in ("my-tree 0.4: a local source tree", "from-git 2.1: a git URL", "an-sdist 3.0: an sdist"):
        assert want in r.stderr, r.stderr
    assert "tok3n" not in r.stderr and not any(bad in r.stderr for bad in NEVER)
    assert not load(env).env_prefix.exists()
    # the cache audit (warm's up-to-date check) names them too, and reads no folder as a wheel
    locked = lockfile.read(load(env).project_dir / "pixi.lock", "default", "linux-64")
    whys = {m.artifact.name: m.why for m in cache.audit(load(env), locked, {}, "rattler")}
    assert whys["from-git"].startswith("a git URL") and "never be cached" in whys["my-tree"]


# ---- point 4: lock-derived file names --------------------------------------------------------

@pytest.mark.parametrize("tail", ["..%2F..%2Fevil-1.0-py3-none-any.whl", "evil%2F..%2F"])
def test_wheel_url_that_decodes_to_a_path_is_rejected(tmp_path: Path, tail: str) -> None:
    built, port = _build(tmp_path, [channel.python_spec()], [])
    _add_pypi(built.project / "pixi.lock", [("evil", "1.0", f"http://127.0.0.1:{port}/wheels/{tail}")])
    env = _env(tmp_path, built.project)
    with mirror.Mirror(built.root, port):
        r = run_cli(["warm"], env)
    assert r.returncode == 1, r.stderr
    assert "evil" in r.stderr and "not a plain file name" in r.stderr
    assert not any(bad in r.stderr for bad in NEVER)
    assert not list((tmp_path / "ws").rglob("evil*"))


# ---- issue 11: messages that say what is wrong --------------------------------------------------

def test_pixi_installer_without_pixi_says_pixi_is_missing(tmp_path: Path) -> None:
    built, _ = _build(tmp_path, [_tool()], [])
    env = _env(tmp_path, built.project, AUTO_INFER_INSTALLER="pixi", PATH=os.path.dirname(os.sys.executable))
    for task in ("warm", "install"):
        r = run_cli([task], env)
        assert r.returncode == 1 and "pixi is not installed" in r.stderr, r.stderr
        assert "AUTO_INFER_INSTALLER=rattler" in r.stderr and "warm" not in r.stderr.split("fix:")[-1]


def test_failed_install_is_recorded_as_failed_not_interrupted(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "pixi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo pixi 0.60.0; exit 0; }\n"
                    "echo 'error: the solver broke' >&2\nexit 1\n")
    fake.chmod(0o755)
    built, _ = _build(tmp_path, [_tool()], [])
    env = _env(tmp_path, built.project, AUTO_INFER_INSTALLER="pixi", PATH=f"{fake.parent}:{os.environ['PATH']}")
    r = run_cli(["warm"], env)
    assert r.returncode == 1 and "the solver broke" in r.stderr, r.stderr
    reason = environment.health_check(load(env))
    assert reason is not None and reason.kind is environment.Kind.FAILED and reason.repair
    assert "failed" in reason.text and "the solver broke" in reason.text


def test_empty_environment_and_file_channel_without_subdir(tmp_path: Path) -> None:
    built, _ = _build(tmp_path, [_tool()], [])
    text = (built.project / "pixi.lock").read_text()
    empty = tmp_path / "empty.lock"
    empty.write_text("\n".join(ln for ln in text.splitlines()
                               if not ln.startswith(("      linux-64:", "      - conda"))).replace(
                                   "    packages:\n", "    packages: {}\n") + "\n")
    with pytest.raises(UserError, match="locks no packages") as exc:
        lockfile.read(empty, "default", "linux-64")
    assert "add dependencies" in str(exc.value)
    url = f"file://{tmp_path}/loose/cuda-tool-12.6-0.tar.bz2"
    nosub = tmp_path / "nosub.lock"
    nosub.write_text(text.replace(str(built.base_url) + "/channel/linux-64/cuda-tool-12.6-0.tar.bz2", url))
    with pytest.raises(UserError, match="without a `subdir:` field") as exc:
        lockfile.read(nosub, "default", "linux-64")
    assert url in str(exc.value) and "subdir: linux-64" in str(exc.value)


def test_a_platform_that_is_not_this_machines_is_warned_about(tmp_path: Path) -> None:
    other = "linux-aarch64" if current_platform() != "linux-aarch64" else "linux-64"
    noarch = channel.CondaSpec("docs", "1.0", {"share/docs/a.txt": b"a\n"}, subdir="noarch")
    built, port = _build(tmp_path, [noarch], [], platform=other)
    env = _env(tmp_path, built.project, AUTO_INFER_PLATFORM=other, AUTO_INFER_CHECK_MODULES="none")
    with mirror.Mirror(built.root, port):
        r = run_cli(["warm"], env)
    assert r.returncode == 0, r.stderr
    assert f"WARNING: installing for {other}" in r.stderr and current_platform() in r.stderr


# ---- issue 21.7: names from URLs: the path only, never the query or the fragment ----------------

def _hello_url_tail(tmp_path: Path, tail: str) -> tuple[channel.BuiltChannel, int]:
    from tests.helpers import small_channel_specs
    built, port = _build(tmp_path, *small_channel_specs())
    lock = built.project / "pixi.lock"
    lock.write_text(lock.read_text().replace("hello-1.0-0.tar.bz2", "hello-1.0-0.tar.bz2" + tail))
    return built, port


@pytest.mark.parametrize("tail", ["?x=../../y", "#../../y", "?a=b/c/../../d", "?f=/etc/passwd#x/../.."])
def test_a_query_or_fragment_never_becomes_part_of_a_stored_name(tmp_path: Path, tail: str) -> None:
    from auto_infer.install import bundle_layout
    built, _port = _hello_url_tail(tmp_path, tail)
    s = load(_env(tmp_path, built.project))
    hello = next(
        a for a in lockfile.read(built.project / "pixi.lock", "default", "linux-64").conda if a.name == "hello"
    )
    assert (hello.filename, hello.subdir) == ("hello-1.0-0.tar.bz2", "linux-64")
    assert bundle_layout.member_path(hello) == "conda/linux-64/hello-1.0-0.tar.bz2"
    assert bundle_layout.store_path(s, hello) == s.conda_archive_dir / "linux-64" / "hello-1.0-0.tar.bz2"


@pytest.mark.parametrize(("path", "says"), [
    ("linux-64/hello-1.0-0.tar.bz2%2F..%2Fz.tar.bz2", "not a plain file name"),
    ("..%2F..%2Fx/hello-1.0-0.tar.bz2", "subdir"),        # no subdir: rattler wants the URL's folder
    ("linux-64/..%2Fhello-1.0-0.tar.bz2", "not a plain file name"),
    ("linux-64/hello-1.0-0.tar.bz2%00.conda", "not a plain file name"),
    ("linux-64/hello-1.0-0.tar.bz2/", "pixi.lock"),
])
def test_a_conda_url_whose_path_decodes_to_no_plain_name_is_refused(tmp_path: Path, path: str, says: str) -> None:
    from tests.helpers import small_channel_specs
    built, _port = _build(tmp_path, *small_channel_specs())
    lock = built.project / "pixi.lock"
    lock.write_text(lock.read_text().replace("linux-64/hello-1.0-0.tar.bz2", path))
    with pytest.raises(UserError) as err:
        lockfile.read(lock, "default", "linux-64")
    assert says in str(err.value) and str(lock) in str(err.value)


def test_a_subdir_folder_that_decodes_to_a_path_is_refused(tmp_path: Path) -> None:
    from tests.helpers import small_channel_specs
    built, _port = _build(tmp_path, *small_channel_specs())
    lock = built.project / "pixi.lock"
    lines = lock.read_text().replace("linux-64/hello-1.0-0.tar.bz2", "..%2F..%2Fx/hello-1.0-0.tar.bz2").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("- conda:") and "hello" in line)
    lock.write_text("\n".join([*lines[:at + 1], "  subdir: linux-64", *lines[at + 1:]]) + "\n")
    with pytest.raises(UserError) as err:
        lockfile.read(lock, "default", "linux-64")
    assert "'../../x'" in str(err.value) and "not a plain file name" in str(err.value)


def test_a_bundle_of_a_lock_with_a_query_string_stays_inside_and_imports(tmp_path: Path) -> None:
    import tarfile
    built, port = _hello_url_tail(tmp_path, "?x=../../y")
    env = _env(tmp_path, built.project)
    out = tmp_path / "q.bundle.tar"
    with mirror.Mirror(built.root, port):
        r = run_cli(["bundle", "export", str(out)], env)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert "conda/linux-64/hello-1.0-0.tar.bz2" in names and not [n for n in names if ".." in n.split("/")]
    cache_root = Path(env["AUTO_INFER_SGLANG_CACHE_ROOT"])
    stored = [p for p in (tmp_path / "ws").rglob("hello-1.0-0.tar.bz2*")]
    assert stored and all(cache_root in p.parents for p in stored)
    far = _env(tmp_path / "far", tmp_path / "far" / "template")
    r = run_cli(["bundle", "import", str(out)], far)
    assert r.returncode == 0, r.stderr                               # the tool's own bundle is accepted


def test_a_lock_is_parsed_once_per_process_and_again_once_its_bytes_change(tmp_path: Path) -> None:
    """`template` and `install` in one run share one parse; a same-size rewrite with the same
    timestamps is still seen (the memo is keyed by content, not by stat)."""
    built, _ = _build(tmp_path, [_tool()], [])
    lock = tmp_path / "copy.lock"
    text = (built.project / "pixi.lock").read_text()
    lock.write_text(text)
    first = lockfile.read(lock, "default", "linux-64")
    assert lockfile.read(lock, "default", "linux-64") is first
    st = lock.stat()
    edited = text.replace("cuda-tool-12.6-0", "cuda-tool-12.7-0")       # same length
    assert len(edited) == len(text) and edited != text
    lock.write_text(edited)
    os.utime(lock, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = lockfile.read(lock, "default", "linux-64")
    assert again is not first and again.sha256 != first.sha256
    assert {a.filename for a in again.conda if a.name == "cuda-tool"} == {"cuda-tool-12.7-0.tar.bz2"}
