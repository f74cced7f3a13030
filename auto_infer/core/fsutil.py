"""Small filesystem helpers: atomic writes, hashing, filesystem facts."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from auto_infer.core.errors import UserError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISREG, "a file"))


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_target(path: Path, what: str = "the file to write") -> None:
    """The one rule for every file we write to a path: replace a regular file or nothing, never a
    device, a symlink, a FIFO, a socket or a folder that is there (it is not ours to replace)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        parent = existing_parent(path.parent)
        if not os.path.isdir(parent):
            raise UserError(f"cannot write {what} {path}: {parent} is {kind_of(parent.lstat().st_mode)}, not a "
                            "folder", where=str(path), fix="name a path inside a folder") from None
        return
    except NotADirectoryError:
        raise UserError(f"cannot write {what} {path}: a part of its folder is a file, not a folder",
                        where=str(path), fix="name a path inside a folder") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is {kind_of(mode)}: auto-infer writes only over a regular file (or where "
                        "nothing is)", where=str(path),
                        fix="name another path, or move that one away yourself if you mean to replace it")


def check_folder(path: Path, what: str = "the folder") -> None:
    """A folder we create or use: a folder (or a link to one) or nothing; never a file, a device, a
    FIFO, nor a dangling link (following it would create a folder elsewhere)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise UserError(f"{what} {path} is a symlink to {os.readlink(path)}, which does not exist",
                            where=str(path), fix="create the folder it points at, or name another path") from None
        check_target(path, what)            # its parent must be a folder
        return
    except NotADirectoryError:
        raise UserError(f"{what} {path}: a part of its path is a file, not a folder", where=str(path),
                        fix="name a path inside a folder") from None
    if not stat.S_ISDIR(mode):
        raise UserError(f"{what} {path} is {kind_of(mode)}, not a folder", where=str(path),
                        fix="name a folder (or a new path: it is created)")


def is_stdout(path: Path | str) -> bool:
    return str(path) == "-"


@contextmanager
def replacing(path: Path, what: str = "the file to write", mode: int = 0o644,
              dash_is_stdout: bool = False, sync: bool = True) -> Iterator[BinaryIO]:
    """A file whose bytes become ``path`` as a whole when the block ends without an error (fsync,
    then os.replace), or nothing at all; with ``dash_is_stdout``, ``-`` is stdout (refused when it
    is a terminal)."""
    if dash_is_stdout and is_stdout(path):
        if os.isatty(1):
            raise UserError(f"{what} would go to the terminal (-)", where="-",
                            fix="redirect stdout to a file or a pipe, or name a file instead of -")
        sys.stdout.flush()
        with os.fdopen(os.dup(1), "wb") as out:     # fd 1 itself: a runner (doit) may wrap sys.stdout
            yield out
        return
    check_target(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        check_target(path, what)            # once more: nothing put a device or a link there meanwhile
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def open_append(path: Path, what: str = "the log") -> BinaryIO:
    """``path`` opened to append, under the same rule (a regular file or nothing): never follows a
    symlink, never blocks on a FIFO."""
    check_target(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise UserError(f"cannot open {what} {path}: {exc.strerror}", where=str(path),
                        fix="name a regular file (or a new path) you may write") from None
    fmode = os.fstat(fd).st_mode
    if not stat.S_ISREG(fmode):
        os.close(fd)
        raise UserError(f"{what} {path} is {kind_of(fmode)}: auto-infer writes only to a regular file",
                        where=str(path), fix="name a regular file (or a new path)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Write to a temp file beside ``path``, fsync, then os.replace: old or new, never half; only over
    a regular file or nothing (:func:`check_target`). ``sync=False``: no fsync, for a record of files
    nobody syncs either (an installed environment): the rename is still all or nothing, and syncing
    the record alone would force the journal commit of every link the installer just made."""
    with replacing(path, mode=mode, sync=sync) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    atomic_write_bytes(path, text.encode(), sync=sync)


def atomic_write_json(path: Path, data: Any, sync: bool = True) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", sync=sync)


def read_json(path: Path) -> Any | None:
    """Parsed JSON, or None when the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def existing_parent(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (string operations: called per instance)."""
    p = os.fspath(path)
    while not os.path.exists(p) and p != os.path.dirname(p):
        p = os.path.dirname(p)
    return Path(p)


def same_filesystem(a: Path, b: Path) -> bool:
    """True when files can be hard-linked from ``a`` to ``b``: one device AND one mount
    (two bind mounts of one filesystem share st_dev, but link() across them fails: EXDEV)."""
    if existing_parent(a).stat().st_dev != existing_parent(b).stat().st_dev:
        return False
    return mount_of(a)[0] == mount_of(b)[0]


def mount_of(path: Path, mountinfo: str | None = None) -> tuple[str, str]:
    """(mount point, fs type) of the mount holding ``path``, from /proc/self/mountinfo."""
    target = os.path.realpath(existing_parent(path)) if mountinfo is None else str(path)
    best = ("/", "unknown")
    try:
        lines = (Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo).splitlines()
    except OSError:
        return best
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mnt = fields[4].replace("\\040", " ")
        fstype = right.split()[0]
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
            best = (mnt, fstype)
    return best


def on_container_layer(path: Path, mountinfo: str | None = None) -> bool:
    """True when ``path`` lives on the container's own writable layer (overlay root)."""
    mnt, fstype = mount_of(path, mountinfo)
    return mnt == "/" and fstype in {"overlay", "overlayfs", "fuse-overlayfs", "aufs"}


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def disk_full(path: Path, detail: str) -> UserError:
    """The message for a full filesystem (or quota): where, how much is free, what to do."""
    try:
        free = f"{shutil.disk_usage(existing_parent(path)).free // 1024} KiB free"
    except OSError:
        free = "free space unknown"
    return UserError(f"no space left on the filesystem holding {path} (mounted at {mount_of(path)[0]}, "
                     f"{free}): {detail}", where=str(path),
                     fix="free space there, or give that volume more room, then rerun: a half-done "
                         "install is never trusted, the next run redoes it")


def nearly_full(path: Path, margin: int = 1 << 20) -> bool:
    """Less than ``margin`` bytes (or no inode) left for ``path``: a tool failing now failed of that,
    even when its message only shows a consequence (an empty file it could not write, read back)."""
    try:
        st = os.statvfs(existing_parent(path))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin or (st.f_files > 0 and st.f_favail == 0)


@contextmanager
def disk_full_is_a_user_error(path: Path) -> Iterator[None]:
    """A full disk is the user's to fix: one clear message, exit 1, not a crash log."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        written = exc.filename2 or exc.filename      # a copy names (source, destination)
        raise disk_full(Path(written) if written else path, exc.strerror or str(exc)) from None


@contextmanager
def unwritable_is_a_user_error(folder: Path, what: str) -> Iterator[None]:
    """A read-only mount or a folder we may not write, where we write ``what`` (in ``folder``, made
    if missing), is the user's to fix: one clear message, exit 1, not a crash log. Errors on other
    paths (reading a cache, say) pass through."""
    try:
        yield
    except OSError as exc:
        failed = Path(exc.filename) if isinstance(exc.filename, str) else None
        if exc.errno not in READ_ONLY or failed is None or not (folder.is_relative_to(failed)
                                                               or failed.parent == folder):
            raise
        raise UserError(f"cannot write {what} in {folder}: {exc.strerror}", where=str(folder),
                        fix="name a place you can write (not a read-only mount, nor another user's folder)") from None
