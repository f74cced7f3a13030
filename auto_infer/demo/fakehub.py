"""A small Hugging Face Hub-compatible endpoint on 127.0.0.1, for tests and demos (stdlib only).

Serves ``ROOT/<org>/<name>/**`` as model repos to the real ``huggingface_hub`` client
(``HF_ENDPOINT=<url>``), with the routes and headers its ``snapshot_download`` and ``model_info``
use (huggingface_hub 0.36, 1.x and 2.x):

* ``GET /api/models/<repo>[/revision/<rev>][?blobs=true]``: the commit sha and the files (size,
  git blob id, LFS sha256); ``GET /api/models/<repo>/tree/<rev>[?recursive=true]``: the listing;
* ``HEAD|GET /<repo>/resolve/<rev>/<file>``: the file, with ``X-Repo-Commit``, ``X-Linked-Etag``
  (the sha256 of an LFS file, the blob id of another), ``X-Linked-Size`` and ``Range`` support
  (``bytes=N-``: how the client resumes). ``transfers`` counts the bytes of every body sent;
  ``state.cut[file] = offset`` cuts that file's next body there (a broken transfer, for tests).

Revisions: ``main`` and the commit sha, which is derived from the content (it changes when a file
does). Every request is logged with its ``Authorization`` header, so tests can see a token go out.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from auto_infer.demo.background import BackgroundServer

LFS_GLOBS = ("*.safetensors", "*.gguf", "*.bin", "*.pt", "*.pth", "*.onnx", "*.h5", "*.msgpack")
LFS_THRESHOLD = 1024


def file_meta(path: Path, rel: str) -> dict[str, Any]:
    data = path.read_bytes()
    meta: dict[str, Any] = {"path": path, "rfilename": rel, "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(), "lfs": None,
                            "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
    if len(data) > LFS_THRESHOLD or any(fnmatch.fnmatch(path.name, g) for g in LFS_GLOBS):
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{meta['sha256']}\nsize {len(data)}\n"
        meta["lfs"] = {"sha256": meta["sha256"], "size": len(data), "pointerSize": len(pointer)}
        meta["blobId"] = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer.encode()).hexdigest()
    return meta


def read_repo(root: Path, repo_id: str) -> dict[str, Any] | None:
    folder = (root / repo_id).resolve()
    if repo_id.count("/") != 1 or not folder.is_dir() or root.resolve() not in folder.parents:
        return None
    files = [file_meta(p, str(p.relative_to(folder))) for p in sorted(folder.rglob("*"))
             if p.is_file() and ".git" not in p.relative_to(folder).parts]
    sha = hashlib.sha1(json.dumps([(m["rfilename"], m["sha256"]) for m in files]).encode()).hexdigest()
    return {"id": repo_id, "sha": sha, "files": {m["rfilename"]: m for m in files}}


@dataclass
class HubState:
    root: Path
    log: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cut: dict[str, int] = field(default_factory=dict)      # file -> offset: its first GET ends there, cut
    transfers: list[tuple[str, int, int]] = field(default_factory=list)   # (file, first byte, bytes sent)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState                      # set on the subclass FakeHub makes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        entry = {"method": self.command, "path": self.path, "status": args[1] if len(args) > 1 else None,
                 "authorization": self.headers.get("Authorization")}
        with self.state.lock:
            self.state.log.append(entry)

    def send(self, code: int, body: Any = b"", headers: dict[str, Any] | None = None,
             ctype: str = "application/json") -> None:
        raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        self.send_response(code)
        for key, value in {**(headers or {}), "Content-Type": ctype, "Content-Length": len(raw)}.items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def fail(self, code: int, error_code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        self.send(code, {"error": message}, {"X-Error-Code": error_code, "X-Error-Message": message, **(extra or {})})

    def lookup(self, repo_id: str, rev: str) -> dict[str, Any] | None:
        repo = read_repo(self.state.root, unquote(repo_id))
        if repo is None:
            self.fail(404, "RepoNotFound", "Repository not found")
        elif unquote(rev) not in ("main", repo["sha"]):
            self.fail(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            return None
        return repo

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")          # still percent-encoded, segment by segment
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self.api(parts[2:], query)
        elif "resolve" in parts[1:3] and len(parts) >= parts.index("resolve") + 3:
            i = parts.index("resolve")
            self.resolve("/".join(parts[:i]), parts[i + 1], unquote("/".join(parts[i + 2:])))
        else:
            self.fail(404, "RepoNotFound", "Not found")

    do_HEAD = do_GET  # noqa: N815 - HEAD answers the same headers without a body

    def api(self, parts: list[str], query: dict[str, str]) -> None:
        kind, repo_id, rev = "info", "/".join(parts[:2]), "main"
        if len(parts) >= 4 and parts[2] in ("revision", "tree"):
            kind, rev = parts[2], parts[3]
        repo = self.lookup(repo_id, rev)
        if repo is None:
            return
        if kind == "tree":
            self.send(200, tree(repo))
            return
        blobs = query.get("blobs", "false").lower() == "true"
        siblings = [{"rfilename": m["rfilename"], **({"size": m["size"], "blobId": m["blobId"], "lfs": m["lfs"]}
                                                     if blobs else {})} for m in repo["files"].values()]
        self.send(200, {"id": repo["id"], "modelId": repo["id"], "author": repo["id"].split("/")[0],
                        "sha": repo["sha"], "private": False, "gated": False, "disabled": False,
                        "lastModified": "2024-01-01T00:00:00.000Z", "siblings": siblings})

    def resolve(self, repo_id: str, rev: str, filename: str) -> None:
        repo = self.lookup(repo_id, rev)
        if repo is None:
            return
        meta = repo["files"].get(filename)
        if meta is None:
            self.fail(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": repo["sha"]})
            return
        etag = meta["sha256"] if meta["lfs"] else meta["blobId"]
        headers: dict[str, Any] = {"X-Repo-Commit": repo["sha"], "Accept-Ranges": "bytes", "ETag": f'"{etag}"',
                                   "X-Linked-Etag": f'"{etag}"', "X-Linked-Size": meta["size"]}
        data = Path(meta["path"]).read_bytes()
        rng = self.headers.get("Range", "")
        start, end, code = 0, len(data) - 1, 200
        if rng.startswith("bytes="):
            first, _, last = rng[6:].split(",")[0].partition("-")
            start, end, code = int(first or 0), min(int(last), len(data) - 1) if last else len(data) - 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        if self.command == "HEAD":
            self.send(code, data[start:end + 1], headers, "application/octet-stream")
            return
        with self.state.lock:
            cut = self.state.cut.pop(filename, None)
        body = data[start:end + 1] if cut is None else data[start:max(cut, start)]
        self.send_response(code)
        for key, value in {
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": end + 1 - start,
        }.items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(body)
        with self.state.lock:
            self.state.transfers.append((filename, start, len(body)))
        if cut is not None:             # the promised length was not sent: the client sees a cut transfer
            self.close_connection = True


def tree(repo: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    folders: set[str] = set()
    for rel, meta in repo["files"].items():
        parts = rel.split("/")
        folders.update("/".join(parts[:k]) for k in range(1, len(parts)))
        entry = {"type": "file", "oid": meta["blobId"], "size": meta["size"], "path": rel}
        if meta["lfs"]:
            entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": meta["lfs"]["pointerSize"]}
        out.append(entry)
    out += [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(folders)]
    return sorted(out, key=lambda e: e["path"])


class FakeHub(BackgroundServer):
    """``with FakeHub(root) as hub:`` serves ``root`` at ``hub.url`` (HF_ENDPOINT) until the block ends."""

    def __init__(self, root: Path, port: int | None = None, host: str = "127.0.0.1"):
        super().__init__(port, host)
        self.state = HubState(root)

    @property
    def transfers(self) -> list[tuple[str, int, int]]:
        """(file, first byte, bytes sent) of every file body the hub sent, in order."""
        with self.state.lock:
            return list(self.state.transfers)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.log)

    def handler(self) -> Any:
        return type("BoundHandler", (Handler,), {"state": self.state})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder holding <org>/<name>/<files>")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    hub = FakeHub(args.root, args.port or None).start()
    print(f"export HF_ENDPOINT={hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
