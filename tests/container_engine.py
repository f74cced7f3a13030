"""A real container engine for the tests: a private Docker (or Podman), a Debian base image and the
auto-infer image built the documented way. One self-contained module, reusable by any test file.

Use (pytest): the fixtures below are registered for every test file by ``tests/conftest.py``
(``pytest_plugins``); mark the tests ``@pytest.mark.container``::

    def test_something(docker_image: Built) -> None:
        eng = docker_image.engine                       # the private daemon (DOCKER_HOST set in eng.env)
        r = eng.cli("run", "--rm", "--network", "none", docker_image.tag, "auto-infer", "--version")
        r = eng.compose(folder, ["docker-compose.yml", ...], "up", "-d")   # docker-compose, same daemon

- ``docker_engine`` (session): starts ``dockerd`` with its own data root, exec root and socket
  (overlay2, ``--iptables=false --bridge=none``: no host network changes), stops it by its pid at the
  end, unmounts what it left mounted (netns), and removes every container the session made. The data
  root persists under ``CI_DIR/docker-root`` (image cache) for the one session holding its lock; a
  second concurrent session gets a private one, deleted at the end.
- ``podman_engine`` (session): Podman with runc, netavark and default ulimits it may set, storage and
  ``containers.conf`` under ``CI_DIR/podman``; compose is ``podman-compose`` (PyPI 1.6).
- ``docker_image`` / ``podman_image`` (session): the auto-infer image (tag in ``.tag``), built FROM
  the base with ``templates/docker/Dockerfile.snippet`` (``install-auto-infer.sh``) and a wheelhouse,
  so the build needs no index; entrypoint = the boot hook, then ``exec "$@"`` (the snippet's lines).
- The base image (``base_image_tar``): ``mmdebstrap --variant=minbase`` bookworm with BASE_PACKAGES,
  made once per machine and cached as ``CI_DIR/base-<hash>.tar``, rebuilt when its recipe changes.

Where an engine cannot start (no binary, no privileges, no overlay), the fixtures skip with the
reason. ``python -m tests.container_engine [docker|podman]`` prints the same verdict in one line
(exit 0 ready, 1 not) for CI. ``CI_DIR`` is ``$AUTO_INFER_CI_ROOT/container`` (default
/opt/auto-infer-ci/container).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parent.parent
CI_DIR = Path(os.environ.get("AUTO_INFER_CI_ROOT", "/opt/auto-infer-ci")) / "container"
SUITE = "bookworm"
# what infer-dev's stage-2 has that auto-infer needs (coreutils, bash: in minbase already), and
# libgomp1 for llama.cpp's llama-server (OpenMP), bind-mounted from the host by the journey tests
BASE_PACKAGES = ("python3", "python3-venv", "libgomp1")
RECIPE = {"tool": "mmdebstrap", "variant": "minbase", "suite": SUITE, "include": BASE_PACKAGES, "v": 1}
LABEL = "auto-infer-ci=1"       # every container and image this module makes carries it


class EngineUnavailable(RuntimeError):
    """The engine cannot run containers here; the message says why."""


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def host_env(**extra: str) -> dict[str, str]:
    """os.environ without what would leak into compose files or containers (AUTO_INFER_*, HOST_VOLUME_*,
    proxies), plus ``extra``: a test says what the stack gets."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AUTO_INFER_", "HOST_VOLUME_"))
               and k.lower() not in proxies}, **extra}


def _run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


@dataclass
class Engine:
    """One running engine: its CLI (``cli``), its compose (``compose``), the env both need."""

    name: str                                   # "docker" | "podman"
    env: dict[str, str]
    compose_cmd: list[str]
    _stop: list[object] = field(default_factory=list, repr=False)
    # names this session's containers: Podman's storage is shared by concurrent sessions (dockerd is private)
    prefix: str = ""

    def cli(self, *args: str, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run([self.name, *args], env=self.env, timeout=timeout, input=input)

    def compose(self, folder: Path, files: Sequence[str], *args: str, env: dict[str, str] | None = None,
                project: str = "aitest", timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``docker-compose -p PREFIX+PROJECT -f F1 -f F2 ... ARGS`` in ``folder`` (where .env would be)."""
        cmd = [*self.compose_cmd, "-p", self.prefix + project, *(a for f in files for a in ("-f", f)), *args]
        return _run(cmd, env={**self.env, **(env or {})}, timeout=timeout, cwd=folder)

    def has_image(self, tag: str) -> bool:
        return self.cli("image", "inspect", tag, timeout=60).returncode == 0

    def remove_containers(self) -> None:
        """Every container of this session: all of a private dockerd's, Podman's named with ``prefix``."""
        mine = ("--filter", f"name=^{self.prefix}") if self.prefix else ()
        ids = self.cli("ps", "-aq", *mine, timeout=60).stdout.split()
        if ids:
            self.cli("rm", "-f", *ids, timeout=300)


# ---- the base image: a Debian root filesystem from Debian's archive -----------------------------

def base_image_tar() -> Path:
    """CI_DIR/base-<hash>.tar, made by mmdebstrap once per machine (~1-3 min), reused after."""
    tar = CI_DIR / f"base-{recipe_hash()}.tar"
    if tar.is_file():
        return tar
    if shutil.which("mmdebstrap") is None:
        raise EngineUnavailable("no mmdebstrap to make the base image (bash .ci/setup-container-engine.sh)")
    CI_DIR.mkdir(parents=True, exist_ok=True)
    with _locked(CI_DIR / "base.lock"), tempfile.TemporaryDirectory(dir=CI_DIR, prefix="mmdebstrap-") as tmp:
        if tar.is_file():                       # another session made it while this one waited
            return tar
        part = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", f"--variant={RECIPE['variant']}", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(part)]
        r = _run(cmd, env={**os.environ, "TMPDIR": tmp}, timeout=1200)
        if r.returncode != 0:
            raise EngineUnavailable(f"mmdebstrap failed (exit {r.returncode}): {r.stderr.strip()[-400:]}")
        os.replace(part, tar)
        for old in CI_DIR.glob("base-*.tar"):
            if old != tar:
                old.unlink()                    # made from an older recipe
    return tar


class _locked:
    """An exclusive flock on ``path`` for the ``with`` block (waits)."""

    def __init__(self, path: Path, wait: bool = True):
        self.path, self.wait = path, wait
        self.fh: IO[str] | None = None

    def __enter__(self) -> _locked:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "w")  # noqa: SIM115
        fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.fh is not None
        self.fh.close()


# ---- Docker: a private dockerd -------------------------------------------------------------------

def _mounts_under(root: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == str(root) or target.startswith(f"{root}/"):
            out.append(target)
    return sorted(out, key=len, reverse=True)


def _data_root() -> tuple[Path, _locked | None]:
    """The shared image cache if no other session holds it, else a private folder."""
    try:
        lock = _locked(CI_DIR / "docker-root.lock", wait=False).__enter__()
        return CI_DIR / "docker-root", lock
    except BlockingIOError:
        (CI_DIR / "sessions").mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=CI_DIR / "sessions", prefix="docker-")), None


@dataclass
class Dockerd:
    proc: subprocess.Popen[bytes]
    exec_root: Path
    data_root: Path
    lock: _locked | None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()               # dockerd stops its containers and its containerd
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        for target in _mounts_under(self.exec_root) + _mounts_under(self.data_root):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        if self.lock is None:
            shutil.rmtree(self.data_root, ignore_errors=True)
        else:
            self.lock.__exit__()


def start_docker() -> Engine:
    """A private dockerd, ready; raises EngineUnavailable with the reason where it cannot start."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        raise EngineUnavailable("no dockerd/docker on PATH (bash .ci/setup-container-engine.sh installs docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd needs root")
    data_root, lock = _data_root()
    exec_root = Path(tempfile.mkdtemp(prefix="aic-", dir="/tmp"))    # short: socket paths are limited
    sock = exec_root / "docker.sock"
    log = open(exec_root / "dockerd.log", "wb")  # noqa: SIM115
    cmd = ["dockerd", "--data-root", str(data_root), "--exec-root", str(exec_root / "x"),
           "--pidfile", str(exec_root / "dockerd.pid"), "-H", f"unix://{sock}", "--storage-driver", "overlay2",
           "--iptables=false", "--ip-masq=false", "--bridge=none", "--log-level=warn"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    daemon = Dockerd(proc, exec_root, data_root, lock)
    env = host_env(DOCKER_HOST=f"unix://{sock}", DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")
    engine = Engine("docker", env, _compose_bin("docker-compose"), [daemon])
    for _ in range(300):
        if proc.poll() is not None:
            break
        if sock.exists() and engine.cli("info", "--format", "{{.Driver}}", timeout=30).returncode == 0:
            engine.remove_containers()          # a crashed earlier session's leftovers (shared root)
            return engine
        time.sleep(0.2)
    daemon.stop()
    tail = (
        (exec_root / "dockerd.log").read_text(errors="replace").strip().splitlines()[-3:] if exec_root.exists() else []
    )
    raise EngineUnavailable(f"dockerd did not start: {' | '.join(tail) or 'no output'}")


def _compose_bin(name: str) -> list[str]:
    found = shutil.which(name)
    return [found] if found else [name]




# ---- Podman: daemonless, with its own storage and containers.conf -------------------------------

def start_podman() -> Engine:
    """Podman configured for these machines (runc, netavark, ulimits it may set), storage under CI_DIR."""
    if shutil.which("podman") is None:
        raise EngineUnavailable("no podman on PATH (bash .ci/setup-container-engine.sh installs it)")
    compose = shutil.which("podman-compose") or str(CI_DIR / "podman-compose-venv" / "bin" / "podman-compose")
    if not os.access(compose, os.X_OK):
        raise EngineUnavailable("no podman-compose (PyPI 1.6; bash .ci/setup-container-engine.sh installs it)")
    import resource

    root = CI_DIR / "podman"
    run_root = Path(tempfile.mkdtemp(prefix="aip-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    (run_root / "containers.conf").write_text(
        f'[containers]\ndefault_ulimits = ["nofile={hard}:{hard}", "nproc=32768:32768"]\n'
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        '[network]\nnetwork_backend = "netavark"\n')
    # a fixed runroot: podman's database pins the first one it saw, whatever storage.conf says later
    (run_root / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "storage"}"\nrunroot = "{root / "run"}"\n')
    env = host_env(CONTAINERS_CONF=str(run_root / "containers.conf"),
                   CONTAINERS_STORAGE_CONF=str(run_root / "storage.conf"))
    engine = Engine("podman", env, [compose], [_Folder(run_root)], prefix=f"s{os.getpid()}")
    r = engine.cli("info", "--format", "{{.Store.GraphDriverName}}", timeout=120)
    if r.returncode != 0:
        stop(engine)
        raise EngineUnavailable(f"podman info failed: {r.stderr.strip()[-300:]}")
    return engine


@dataclass
class _Folder:
    path: Path

    def stop(self) -> None:
        for _ in range(5):                      # podman's own `container cleanup` (from conmon) may still write
            for target in _mounts_under(self.path):
                subprocess.run(["umount", "-l", target], capture_output=True)
            shutil.rmtree(self.path, ignore_errors=True)
            if not self.path.exists():
                return
            time.sleep(1)


def stop(engine: Engine) -> None:
    """Remove the session's containers, then stop the daemon by its pid / remove the run folder."""
    try:
        engine.remove_containers()
    finally:
        for part in engine._stop:
            part.stop()                         # type: ignore[attr-defined]


# ---- the images ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Built:
    """The auto-infer image on ``engine``: ``tag``; FROM ``base`` (Debian + Python, like stage-2)."""

    engine: Engine
    base: str
    tag: str


def wheelhouse() -> Path:
    """Wheels of auto-infer's dependencies (+ setuptools to build it) for CPython 3.11 on linux x86_64,
    downloaded once per dependency set into CI_DIR/wheels-<hash>: the image build needs no index."""
    import tomlkit

    deps = [str(d) for d in tomlkit.parse((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]  # type: ignore[index, union-attr]
    deps += ["setuptools>=68", "wheel"]
    folder = CI_DIR / f"wheels-{hashlib.sha256(json.dumps(deps).encode()).hexdigest()[:12]}"
    if (folder / ".done").is_file():
        return folder
    with _locked(CI_DIR / "wheels.lock"), tempfile.TemporaryDirectory(dir=CI_DIR) as tmp:
        if (folder / ".done").is_file():
            return folder
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--dest", tmp, "--only-binary", ":all:",
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
               "--abi", "none", *(a for m in range(36, 4, -1) for a in ("--platform", f"manylinux_2_{m}_x86_64")),
               "--platform", "manylinux2014_x86_64", *deps]
        r = _run(cmd, timeout=900)
        if r.returncode != 0:
            raise EngineUnavailable(f"pip download of the image's wheelhouse failed: {r.stderr.strip()[-400:]}")
        Path(tmp, ".done").write_text("\n".join(deps) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        Path(tmp).mkdir()                       # for TemporaryDirectory's cleanup
    return folder


def dockerfile(base: str) -> str:
    """The documented snippet on top of the base, its entrypoint lines switched on."""
    snippet = (REPO / "templates" / "docker" / "Dockerfile.snippet").read_text()
    lines = [ln[2:] if ln.startswith(("# ENTRYPOINT", "# CMD")) else ln for ln in snippet.splitlines()]
    return (f"FROM {base}\nCOPY wheels /tmp/wheels\nARG PIP_NO_INDEX=1\nARG PIP_FIND_LINKS=/tmp/wheels\n"
            + "\n".join(lines) + f"\nLABEL {LABEL}\n")


def _source_files() -> list[str]:
    r = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, timeout=60)
    return sorted(f for f in r.stdout.splitlines() if (REPO / f).is_file())


def build_images(engine: Engine) -> Built:
    """Base image (imported from the cached rootfs tar) + the auto-infer image, each built once."""
    base = f"auto-infer-ci/base:{recipe_hash()}"
    if not engine.has_image(base):
        r = engine.cli("import", str(base_image_tar()), base, timeout=600)
        if r.returncode != 0:
            raise EngineUnavailable(f"{engine.name} import of the base image failed: {r.stderr.strip()[-300:]}")
    wheels = wheelhouse()
    files = _source_files()
    digest = hashlib.sha256(dockerfile(base).encode() + wheels.name.encode())
    for f in files:
        digest.update(f.encode() + b"\0" + (REPO / f).read_bytes())
    tag = f"auto-infer-ci/auto-infer:{digest.hexdigest()[:12]}"
    if engine.has_image(tag):
        return Built(engine, base, tag)
    with tempfile.TemporaryDirectory(prefix="auto-infer-image-") as tmp:
        ctx = Path(tmp)
        for f in files:
            (ctx / "auto-infer" / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, ctx / "auto-infer" / f)
        shutil.copytree(wheels, ctx / "wheels")
        (ctx / "Dockerfile").write_text(dockerfile(base))
        r = engine.cli("build", "--network", "none", "-t", tag, str(ctx), timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{engine.name} build failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    _prune(engine, keep=(base, tag))
    return Built(engine, base, tag)


def _prune(engine: Engine, keep: tuple[str, ...]) -> None:
    """Older auto-infer-ci images (earlier sources, recipes) go: the image cache does not grow per commit.
    Without force: an image a running container uses (another session's) stays."""
    listed = engine.cli("images", "--format", "{{.Repository}}:{{.Tag}}", timeout=60).stdout.split()
    names = ("auto-infer-ci/auto-infer:", "auto-infer-ci/base:")
    ours = [t for t in listed if t.removeprefix("localhost/").startswith(names)   # podman: localhost/...
            and not t.endswith(":<none>")]
    old = [t for t in ours if t.removeprefix("localhost/") not in keep]
    if old:
        engine.cli("rmi", *old, timeout=300)
        engine.cli("image", "prune", "-f", timeout=300)


# ---- pytest fixtures ----------------------------------------------------------------------------

def _engine(start: object) -> Iterator[Engine]:
    try:
        engine = start()                        # type: ignore[operator]
    except EngineUnavailable as e:
        pytest.skip(f"container engine unavailable: {e}")
    try:
        yield engine
    finally:
        stop(engine)


def _image(engine: Engine) -> Built:
    try:
        return build_images(engine)
    except EngineUnavailable as e:
        pytest.skip(f"container image unavailable: {e}")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    yield from _engine(start_docker)


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[Engine]:
    yield from _engine(start_podman)


@pytest.fixture(scope="session")
def docker_image(docker_engine: Engine) -> Built:
    return _image(docker_engine)


@pytest.fixture(scope="session")
def podman_image(podman_engine: Engine) -> Built:
    return _image(podman_engine)


def main(argv: list[str]) -> int:
    """``python -m tests.container_engine [docker|podman]``: one line, can the engine run containers here."""
    name = argv[0] if argv else "docker"
    try:
        engine = start_docker() if name == "docker" else start_podman()
    except EngineUnavailable as e:
        print(f"container engine {name}: CANNOT START ({e}): the `container` tests skip")
        return 1
    try:
        built = build_images(engine)
        r = engine.cli("run", "--rm", "--network", "none", built.tag, "auto-infer", "--version", timeout=300)
        ok = r.returncode == 0
        print(f"container engine {name}: " + (f"ready, image {built.tag} ({r.stdout.strip().splitlines()[-1]})" if ok
              else f"CANNOT RUN the image ({r.stderr.strip()[-300:]}): the `container` tests will fail"))
        return 0 if ok else 1
    except (EngineUnavailable, RuntimeError) as e:
        print(f"container engine {name}: CANNOT BUILD the images ({e}): the `container` tests skip")
        return 1
    finally:
        stop(engine)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
