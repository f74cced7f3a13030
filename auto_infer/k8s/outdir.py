"""`k8s --out DIR`: write the manifests, and remove only what the last render wrote.

The folder keeps a list of our own files (``.auto-infer-k8s.list``: name and sha256 per line; not a
``.yaml``/``.json``, so ``kubectl apply -f DIR`` does not read it). A render removes a file only
when the previous list names it, this render no longer writes it, and it still holds the bytes we
wrote: a user's renamed copy, a ``.bak.yaml`` or an edited file is never removed.

Everything is checked before anything is written: ``kubectl apply -f DIR`` reads every ``.yaml``,
``.yml`` and ``.json`` entry, so each must be a regular UTF-8 file; a folder, a FIFO (never
opened: nothing blocks on it) or a UTF-16 file there is the user's, named in a clear error.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.fsutil import atomic_write_text, check_folder, kind_of
from auto_infer.core.progress import say

LIST = ".auto-infer-k8s.list"
HEAD = "# files `auto-infer k8s` wrote here (name, sha256): only these are ever removed by a later render\n"
KUBECTL_READS = (".yaml", ".yml", ".json")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file, never opening anything else (a FIFO would block)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _check(out: Path, files: Mapping[str, str]) -> None:
    """Refuse, before writing anything, what kubectl would choke on or what we must not replace."""
    for entry in sorted(out.iterdir()):
        ours = entry.name in files or entry.name == LIST
        if not (ours or entry.suffix in KUBECTL_READS):
            continue
        mode = entry.lstat().st_mode
        follows = stat.S_ISLNK(mode) and not ours and entry.is_file()
        if not stat.S_ISREG(mode) and not follows:
            why = "auto-infer k8s writes this name" if ours else f"`kubectl apply -f {out}` would read it"
            raise UserError(f"{entry} is {kind_of(mode)}, not a regular file ({why})", where=str(entry),
                            fix="move it out of the output folder, or give --out another folder")
        if ours:
            continue
        try:
            data = _read_regular(entry) if not follows else entry.read_bytes()
        except OSError as exc:
            raise UserError(f"{entry} cannot be read ({exc.strerror}); `kubectl apply -f {out}` would read it too",
                            where=str(entry), fix="make it readable, or move it out of the output folder") from None
        try:
            (data or b"").decode("utf-8")
        except UnicodeDecodeError:
            bom = (
                " (it starts with a UTF-16 byte-order mark)" if (data or b"")[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
            )
            raise UserError(f"{entry} is not UTF-8 text{bom}; `kubectl apply -f {out}` would read it too",
                            where=str(entry), fix="convert it to UTF-8 (iconv -f UTF-16 -t UTF-8), or move it out "
                                                  "of the output folder") from None


def _previous(out: Path) -> dict[str, str]:
    path = out / LIST
    try:
        data = _read_regular(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserError(f"{path} (the list of our own files) cannot be read ({exc.strerror})", where=str(path),
                        fix="make it readable; without it nothing is removed: delete it to start a new list") from None
    text = (data or b"").decode("utf-8", "replace")
    found = {}
    for line in text.splitlines():
        name, _, digest = line.partition(" ")
        if line.startswith("#") or not digest or "/" in name or name in (".", ".."):
            continue
        found[name] = digest.strip()
    return found


def write(files: Mapping[str, str], out: Path) -> list[str]:
    """Write every file atomically, then the list; remove what only the last render wrote.
    Returns the names of the stale files that were kept (changed since we wrote them)."""
    check_folder(out, "the output folder (--out)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(out, exc) from None
    _check(out, files)
    before = _previous(out)
    _refuse_replacing_edits(out, files, before)
    kept = []
    try:
        for name, text in files.items():
            atomic_write_text(out / name, text)
    except OSError as exc:
        raise _unwritable(out, exc) from None
    for name, digest in sorted(before.items()):
        path = out / name
        if name in files or not path.is_file() or path.is_symlink():
            continue
        if _digest(path.read_bytes()) != digest:
            kept.append(name)
            say(f"  kept {path}: we rendered it before, but it changed since; remove it yourself if it is stale")
            continue
        path.unlink()
    listing = "".join(f"{name} {_digest(text.encode())}\n" for name, text in sorted(files.items()))
    try:
        atomic_write_text(out / LIST, HEAD + listing)
    except OSError as exc:
        raise _unwritable(out, exc) from None
    return kept


def _unwritable(out: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write the manifests into {out}: {exc.strerror or exc}", where=str(out),
                     fix="give --out a folder you can write (a read-only mount? a full disk?)")


def _refuse_replacing_edits(out: Path, files: Mapping[str, str], before: Mapping[str, str]) -> None:
    """A file of a name we render is replaced only when it holds what we wrote last time (or what we
    write now): an edited render, or a file of the user's own, is never overwritten."""
    for name, text in sorted(files.items()):
        path = out / name
        try:
            data = _read_regular(path)
        except FileNotFoundError:
            continue
        if data is None or data == text.encode() or before.get(name) == _digest(data):
            continue
        why = "it was edited since auto-infer k8s wrote it" if name in before else "auto-infer k8s did not write it"
        raise UserError(f"{path} would be replaced, but {why}", where=str(path),
                        fix="move it out of the output folder (render again to get ours), or give --out another "
                            "folder; edit the model config rather than the rendered files")
