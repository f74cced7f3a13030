"""Downloads at scale on real sockets: a 200 MB artifact cut short resumes with HTTP Range (bytes
counted at the mirror), in one run and across a SIGKILL between two warms; a mirror without Range
support; a partial file altered on disk is thrown away; the final sha256 decides."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from auto_infer.core.meter import mb
from auto_infer.core.progress import Step
from auto_infer.core.settings import Net
from auto_infer.demo import channel, mirror
from auto_infer.install import fetch, mirrors
from auto_infer.install.download import part_path
from tests.conftest import Built, Workspace
from tests.helpers import CLI, clean_env, run_cli, small_channel_specs

SIZE = 200_000_000
CUT = SIZE * 6 // 10
NET = Net(timeout=10, deadline=300, connections=2, retries=2, retry_delay=0.05)
WHEEL = "big_blob-1.0-py3-none-any.whl"


@dataclass(frozen=True)
class Big:
    root: Path          # what the mirror serves
    path: Path
    sha256: str


def _random_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 22))
            h.update(block)
            fh.write(block)
            left -= len(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Big:
    root = tmp_path_factory.mktemp("big-mirror")
    path = root / "files" / "big.bin"
    return Big(root, path, _random_file(path, SIZE))


def _job(big: Big, m: mirror.Mirror, dest: Path) -> fetch.Job:
    url = f"{m.url}/files/big.bin"
    return fetch.Job(url, "big.bin", url, dest, big.sha256, size=SIZE)


def _fetch(job: fetch.Job) -> fetch.Fetched:
    return fetch.fetch_all([job], NET, mirrors.load(None), Step("test"), "artifacts")[job.key]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cut_transfer_resumes_where_it_stopped(big: Big, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "cache" / "big.bin"
    with mirror.Mirror(big.root, cut={"big.bin": CUT}) as m:
        got = _fetch(_job(big, m, dest))
        transfers = m.transfers
    assert got.sha256 == big.sha256 and _sha(dest) == big.sha256
    (_, first, sent_first), (_, resumed_at, sent_again) = transfers          # two requests, no more
    assert (first, sent_first) == (0, CUT), transfers
    # the retry asks for the rest: the bytes that reached the disk (whole 1 MiB blocks) are not sent again
    assert CUT - (1 << 20) <= resumed_at <= CUT and resumed_at + sent_again == SIZE, transfers
    assert sent_again <= SIZE - CUT + (1 << 20)                             # ~40 %, counted at the mirror
    assert "truncated" in capfd.readouterr().err
    assert not part_path(dest).exists()


def test_a_server_without_range_starts_over_said_once(big: Big, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "cache" / "big.bin"
    dest.parent.mkdir(parents=True)
    with open(big.path, "rb") as src:
        part_path(dest).write_bytes(src.read(CUT))
    with mirror.Mirror(big.root, ranges=False) as m:
        _fetch(_job(big, m, dest))
        transfers = m.transfers
    assert [(start, n) for _, start, n in transfers] == [(0, SIZE)]
    err = capfd.readouterr().err
    assert err.count("ignored the Range request") == 1 and "starting over from byte 0" in err, err
    assert _sha(dest) == big.sha256


def test_a_partial_file_altered_on_disk_is_thrown_away(big: Big, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "cache" / "big.bin"
    dest.parent.mkdir(parents=True)
    with open(big.path, "rb") as src:
        data = bytearray(src.read(CUT))
    data[12345] ^= 0xFF                              # one byte changed on disk
    part_path(dest).write_bytes(bytes(data))
    with mirror.Mirror(big.root) as m:
        got = _fetch(_job(big, m, dest))
        transfers = m.transfers
    assert [(start, n) for _, start, n in transfers] == [(CUT, SIZE - CUT), (0, SIZE)], transfers
    assert "does not match the lock's sha256: thrown away" in capfd.readouterr().err
    assert got.sha256 == big.sha256 and _sha(dest) == big.sha256


def test_a_partial_file_longer_than_the_artifact_is_thrown_away(big: Big, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "big.bin"
    dest.parent.mkdir(parents=True)
    with open(part_path(dest), "wb") as fh:
        fh.truncate(SIZE + 10)                       # the server answers 416: nothing after that byte
    with mirror.Mirror(big.root) as m:
        _fetch(_job(big, m, dest))
        transfers = m.transfers
    assert [(start, n) for _, start, n in transfers] == [(0, SIZE)], transfers
    assert _sha(dest) == big.sha256


# ---- across two warm runs -------------------------------------------------------------------------

def _big_wheel(folder: Path) -> Path:
    """A real wheel holding 200 MB of random bytes (stored, not deflated: quick to build and install)."""
    blob = folder / "blob.bin"
    _random_file(blob, SIZE)
    out = folder / WHEEL
    info = "big_blob-1.0.dist-info"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.write(blob, "big_blob/blob.bin")
        zf.writestr("big_blob/__init__.py", "")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: big-blob\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    blob.unlink()
    return out


@pytest.fixture(scope="module")
def big_channel(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from auto_infer.core.net import free_port

    root = tmp_path_factory.mktemp("big-channel")
    wheel = _big_wheel(tmp_path_factory.mktemp("big-wheel"))
    port = free_port()
    conda, wheels = small_channel_specs()
    return Built(channel.build(root, f"http://127.0.0.1:{port}", conda, wheels, real_wheels=[wheel]), port)


@pytest.fixture
def big_workspace(tmp_path: Path, big_channel: Built) -> Workspace:
    template = tmp_path / "template"
    shutil.copytree(big_channel.template, template)
    root = tmp_path / "ws"
    env = clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(root), "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_PROJECT_DIR": str(root / "sglang-infer"),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(root / ".cache" / "sglang-infer"),
        "AUTO_INFER_INSTALLER": "rattler", "AUTO_INFER_CHECK_MODULES": "demo_extras",
        "AUTO_INFER_NET_RETRY_DELAY": "0.05", "AUTO_INFER_PROGRESS_INTERVAL": "0.5",
        "HOME": str(tmp_path / "home")})
    return Workspace(root=root, template=template, env=env)


def _settle(path: Path, timeout: float = 120) -> None:
    """Wait until what the mirror sent before it stalled is on disk: every whole 1 MiB block of it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= CUT - (1 << 20):
            return
        time.sleep(0.1)


def test_warm_killed_mid_download_resumes_in_the_next_warm(big_channel: Built, big_workspace: Workspace) -> None:
    wheel_part = part_path(big_workspace.cache_root / "pypi" / "wheels" / WHEEL)
    with mirror.Mirror(big_channel.channel.root, big_channel.port, stall={WHEEL: CUT}) as m:
        proc = subprocess.Popen([*CLI, "warm"], env=big_workspace.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
        try:
            assert m.wait_stalled(120), "warm never reached the cut"
            _settle(wheel_part)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            err = proc.communicate(timeout=30)[1]
    assert proc.returncode == -signal.SIGKILL, err
    kept = wheel_part.stat().st_size
    assert CUT - (1 << 20) <= kept <= CUT, kept          # what arrived before the kill, whole blocks
    with mirror.Mirror(big_channel.channel.root, big_channel.port) as again:
        r = run_cli(["warm"], big_workspace.env, timeout=600)
        transfers = [(start, n) for path, start, n in again.transfers if path.endswith(WHEEL)]
    assert r.returncode == 0, r.stderr
    assert transfers == [(kept, big_channel.channel.wheel_files[-1].stat().st_size - kept)], transfers
    assert "resuming" in r.stderr and "kept from an earlier run" in r.stderr, r.stderr
    assert not wheel_part.exists()


# ---- before the first byte ------------------------------------------------------------------------

def _file_transfers(m: mirror.Mirror) -> list[tuple[str, int, int]]:
    return m.transfers          # GET bodies only: the HEAD requests that size the wheels send none


def test_dry_run_says_what_warm_would_fetch_and_fetches_nothing(big_channel: Built,
                                                                big_workspace: Workspace) -> None:
    with mirror.Mirror(big_channel.channel.root, big_channel.port) as m:
        r = run_cli(["warm", "--dry-run"], big_workspace.env)
        assert r.returncode == 0, r.stderr
        assert _file_transfers(m) == []
        heads = [p for p in m.requests if p.endswith(".whl")]
    files = [*big_channel.channel.conda_files, *big_channel.channel.wheel_files]
    total = mb(sum(p.stat().st_size for p in files))
    lines = r.stdout.splitlines()
    assert lines[0] == f"warm will fetch {total} of {total} ({mb(0)} already in the cache):", r.stdout
    assert f"packages (3 conda + 2 PyPI): 5 files, {total}; {mb(0)} in the cache, {total} to download" in r.stdout
    assert any(ln.strip().startswith("volume ") and "free; needs" in ln for ln in lines), r.stdout
    assert len(heads) == 2                                   # the wheels' sizes: the lock has none
    assert not (big_workspace.cache_root / "pypi" / "wheels" / WHEEL).exists()
    assert not big_workspace.root.exists()                 # nothing written: not even the template's copy


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs: needs root")
def test_warm_refuses_a_volume_too_small_before_any_download(big_channel: Built, big_workspace: Workspace,
                                                             tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], check=True)
    try:
        env = {**big_workspace.env, "AUTO_INFER_SGLANG_CACHE_ROOT": str(small / "cache")}
        with mirror.Mirror(big_channel.channel.root, big_channel.port) as m:
            dry = run_cli(["warm", "--dry-run"], env)
            r = run_cli(["warm"], env)
            transfers = _file_transfers(m)
        assert dry.returncode == 1 and f"volume {small} (tmpfs)" in dry.stdout, dry.stdout + dry.stderr
        assert "not enough free space for warm" in dry.stderr
        assert r.returncode == 1, r.stderr
        assert transfers == []
        assert f"not enough free space for warm on the volume mounted at {small} (tmpfs)" in r.stderr, r.stderr
        assert "MB margin, and has" in r.stderr and "MB free" in r.stderr and "Traceback" not in r.stderr
        assert not list(small.rglob("*.whl")) and not list(small.rglob("*.part"))
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_interrupt_keeps_the_partial_file_and_says_so(big_channel: Built, big_workspace: Workspace,
                                                         sig: signal.Signals) -> None:
    """docker stop or Ctrl-C: warm ends at once (a stalled read is aborted, not waited out) and keeps
    the bytes."""
    wheel_part = part_path(big_workspace.cache_root / "pypi" / "wheels" / WHEEL)
    env = {**big_workspace.env, "AUTO_INFER_NET_TIMEOUT": "600"}     # only the abort can end the read
    with mirror.Mirror(big_channel.channel.root, big_channel.port, stall={WHEEL: CUT}) as m:
        proc = subprocess.Popen([*CLI, "warm"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd="/")
        try:
            assert m.wait_stalled(120), "warm never reached the cut"
            _settle(wheel_part)
            proc.send_signal(sig)
            err = proc.communicate(timeout=60)[1]
        finally:
            proc.kill()
    assert proc.returncode in (130, 143), err
    kept = wheel_part.stat().st_size
    assert CUT - (1 << 20) <= kept <= CUT, kept
    assert f"partial files kept: 1 ({mb(kept)}); the next warm goes on from there" in err, err
    assert "Traceback" not in err
