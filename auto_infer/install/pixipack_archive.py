"""Read a pixi-pack archive in place: never unpacked whole, never run, never held in memory.

Two forms (Quantco/pixi-pack v0.7, format "1"):

* a plain, uncompressed tar (``environment.tar``);
* the self-extracting script (``environment.sh``): a shell header whose last line is
  ``@@END_HEADER@@``, an empty line, the tar as base64 on ONE line, ``@@END_ARCHIVE@@``, then
  the pixi-unpack binary in base64. Only the archive part is read, through :class:`Base64View`,
  a seekable view that decodes just the bytes asked for; the script and the binary never run.

Every member is checked before anything is used: an absolute name, a ``..`` component, a link,
a device or a duplicate refuses the whole pack.
"""

from __future__ import annotations

import base64
import binascii
import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from auto_infer.core.errors import UserError

METADATA = "pixi-pack.json"
ENVIRONMENT = "environment.yml"
HEADER_END = b"\n@@END_HEADER@@\n"
SNIFF = 1 << 20                 # the shell header is a few KiB; its end marker must be in the first MiB
BUFFER = 1 << 18
SCRIPT = "self-extracting script"
REBUILD = "use the pack exactly as pixi-pack wrote it; if it was copied, copy it again and compare its sha256"


class Base64View(io.RawIOBase):
    """The bytes that a one-line base64 text starting at ``start`` of ``fh`` decodes to, seekable.

    Byte ``p`` of the payload lives in the 4-character group ``p // 3``; a read decodes only the
    groups it needs. The payload ends at the first newline (or the end of the file)."""

    def __init__(self, fh: io.BufferedReader, start: int):
        super().__init__()
        self.fh, self.start, self.pos = fh, start, 0
        self.end: int | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.pos = offset
        elif whence == io.SEEK_CUR:
            self.pos += offset
        else:
            raise io.UnsupportedOperation("the embedded archive cannot seek from its end")
        return self.pos

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        want = len(buf)
        if want == 0 or (self.end is not None and self.pos >= self.end):
            return 0
        first, last = self.pos // 3, -(-(self.pos + want) // 3)
        self.fh.seek(self.start + 4 * first)
        text = self.fh.read(4 * (last - first))
        cut = text.find(b"\n")
        if cut >= 0:
            text = text[:cut]
        data = base64.b64decode(text, validate=True)    # binascii.Error on anything but base64
        if cut >= 0 or len(text) < 4 * (last - first):
            self.end = 3 * first + len(data)
        chunk = data[self.pos - 3 * first:self.pos - 3 * first + want]
        buf[:len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


def payload_start(head: bytes) -> int | None:
    """Where the base64 archive starts in a self-extracting script, from its first bytes; None: not one."""
    if not head.startswith(b"#!"):
        return None
    at = head.find(HEADER_END)
    if at < 0:
        return None
    start = at + len(HEADER_END)
    while head[start:start + 1] in (b"\n", b"\r"):
        start += 1
    return start


@contextmanager
def open_pack(path: Path) -> Iterator[tuple[tarfile.TarFile, str]]:
    """The pack's tar (read in place) and its form: "tar" or "self-extracting script"."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"cannot read the pack {path}: {exc.strerror}", where=str(path)) from None
    with fh:
        head = fh.read(SNIFF)
        start = payload_start(head)
        if head.startswith(b"#!") and start is None:
            raise UserError(f"{path} is a script but not pixi-pack's self-extracting one (no line "
                            "@@END_HEADER@@ in its first MiB)", where=str(path),
                            fix="pass the environment.tar or environment.sh that pixi-pack wrote")
        fh.seek(0)
        src: io.BufferedReader = fh if start is None else io.BufferedReader(Base64View(fh, start), BUFFER)
        form = "tar" if start is None else SCRIPT
        try:
            tf = tarfile.open(fileobj=src, mode="r:")
        except binascii.Error as exc:
            raise UserError(f"the archive inside the self-extracting script is damaged or truncated ({exc}); "
                            "nothing was imported", where=str(path), fix=REBUILD) from None
        except tarfile.TarError as exc:
            raise UserError(f"{path} is not a pixi-pack archive: its {form} holds no readable tar ({exc})",
                            where=str(path), fix=REBUILD) from None
        with tf:
            yield tf, form


def member_name(info: tarfile.TarInfo) -> str:
    return info.name[2:] if info.name.startswith("./") else info.name


def unsafe(info: tarfile.TarInfo) -> str | None:
    """Why a member must not be used, or None."""
    name = member_name(info)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts or "\0" in name or "\\" in name:
        return "a path that leaves the archive (..)" if ".." in name else "a name with \\ or NUL in it"
    if info.issym() or info.islnk():
        return f"a link (to {info.linkname!r})"
    if not (info.isfile() or info.isdir()):
        return "a device, fifo or other special file"
    return None


def members(tf: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """Every member by name, each checked (headers only: the data is seeked over)."""
    found: dict[str, tarfile.TarInfo] = {}
    try:
        for info in tf:
            why = unsafe(info)
            if why:
                raise UserError(f"the pack has an unsafe member {info.name!r}: {why}; nothing was imported",
                                where=str(path), fix=REBUILD + "; never import a pack from an untrusted source")
            name = member_name(info)
            if name in found and not info.isdir():
                raise UserError(f"the pack has the member {name!r} twice; nothing was imported",
                                where=str(path), fix=REBUILD)
            found[name] = info
    except (tarfile.TarError, binascii.Error, EOFError) as exc:
        raise UserError(f"the pack's tar is damaged or truncated ({exc}); nothing was imported",
                        where=str(path), fix=REBUILD) from None
    return found


def read_small(tf: tarfile.TarFile, info: tarfile.TarInfo, path: Path, limit: int = 256 << 20) -> bytes:
    """A metadata member's bytes (pixi-pack.json, environment.yml, repodata.json)."""
    if info.size > limit:
        raise UserError(f"the pack's {info.name} is {info.size} bytes, more than a metadata file can be",
                        where=str(path), fix=REBUILD)
    src = tf.extractfile(info)
    if src is None:
        raise UserError(f"the pack's {info.name} is not a file", where=str(path), fix=REBUILD)
    try:
        with src:
            return src.read()
    except (tarfile.TarError, binascii.Error, EOFError) as exc:
        raise UserError(f"the pack's {info.name} cannot be read ({exc})", where=str(path), fix=REBUILD) from None


def is_pixi_pack(path: str | Path) -> bool:
    """Is ``path`` for the pixi-pack reader rather than an auto-infer bundle?

    pixi-pack's self-extracting script is, by its header alone: a damaged payload is then reported
    as a damaged pack, not as a truncated bundle. A tar is when it holds a pixi-pack.json (cheap:
    tar headers only, until it shows up)."""
    try:
        with open(path, "rb") as fh:
            if payload_start(fh.read(SNIFF)) is not None:
                return True
        with open_pack(Path(path)) as (tf, _form):
            return any(member_name(info) == METADATA for info in tf)
    except (OSError, UserError, tarfile.TarError, binascii.Error, EOFError, ValueError):
        return False
