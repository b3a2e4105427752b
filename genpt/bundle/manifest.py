"""Bundle manifests: the sha256 and size of every file, and the checks readers make.

manifest.json sits at a bundle's root and lists every other file under it. A reader
refuses a bundle with a listed file missing or altered, an unlisted file, or a listed
path that escapes the root.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from genpt.errors import GenptError

MANIFEST = "manifest.json"
FORMAT_VERSION = "genpt-bundle/2"  # 2: models as NAME/onnx/model*.onnx, HF file names


class IntegrityError(GenptError, ValueError):
    """A bundle file is missing, altered or unlisted, or the manifest is unreadable."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(root: str | Path) -> dict[str, dict]:
    """{relative posix path: {"sha256", "bytes"}} for every file under root except the manifest."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST
    }


def build_manifest(root: str | Path, **meta) -> dict:
    """The manifest of the files under root, with `meta` (name, version, lineage, ...)."""
    return {"format_version": FORMAT_VERSION, **meta, "files": file_entries(root)}


def dumps(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def write_manifest(root: str | Path, **meta) -> dict:
    from genpt.io import atomic_write_text

    manifest = build_manifest(root, **meta)
    atomic_write_text(Path(root, MANIFEST), dumps(manifest).decode())
    return manifest


def parse_manifest(raw: bytes, where: str) -> dict:
    """A manifest's JSON, checked: a `files` mapping of safe relative paths."""
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        paths = list(files)
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{where}: unreadable manifest ({e})") from None
    for rel in paths:
        if rel.startswith("/") or ".." in Path(rel).parts or rel == MANIFEST:
            raise IntegrityError(f"{where}: unsafe path {rel!r}")
    return manifest


def read_manifest(root: str | Path) -> dict:
    path = Path(root, MANIFEST)
    if not path.is_file():
        raise IntegrityError(f"{root}: no {MANIFEST}; not a bundle (run `genpt export`)")
    return parse_manifest(path.read_bytes(), str(path))


def verify_dir(root: str | Path) -> dict:
    """Every listed file present with its sha256, nothing unlisted; returns the manifest."""
    root = Path(root)
    manifest = read_manifest(root)
    for rel, entry in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"{path}: listed in {MANIFEST} but missing")
        if sha256_file(path) != entry["sha256"]:
            raise IntegrityError(f"{path}: sha256 does not match {MANIFEST} (tampered or corrupt)")
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in manifest["files"]:
            raise IntegrityError(f"{p}: not listed in {MANIFEST}")
    return manifest
