"""Bundle manifests: the sha256 and size of every file of a model bundle.

A bundle is a directory (local, or s3://BUCKET/models/NAME/VERSION/) whose
manifest.json lists every other file; readers verify each file against it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.errors import GenptError

MANIFEST = "manifest.json"


class IntegrityError(GenptError, ValueError):
    """A bundle file is missing or does not match its manifest entry."""


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


def verify_dir(root: str | Path, manifest: dict) -> None:
    """Raise IntegrityError naming the first file that is missing or altered."""
    root = Path(root)
    for rel, entry in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"{path}: listed in {MANIFEST} but missing")
        if sha256_file(path) != entry["sha256"]:
            raise IntegrityError(f"{path}: sha256 does not match {MANIFEST} (tampered or corrupt)")
