"""Published bundles in a store, and the readers' way in: publish, fetch, open, `latest`.

A store (stores.py) holds models/NAME/VERSION/<files>, models/NAME/VERSION/manifest.json
and the pointer models/NAME/latest = {"version": VERSION}. Publishing uploads every file,
then manifest.json (the version exists once it does), then `latest`; a version is
immutable. A failed upload removes what it sent; what it could not remove (the store went
away) is found and removed by `genpt registry gc` (inventory.py). A download lands in a
temp dir that becomes the destination only once every file is verified.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from genpt.bundle.layout import BundleError
from genpt.bundle.manifest import MANIFEST, IntegrityError, dumps, parse_manifest, verify_dir
from genpt.bundle.stores import RegistryError, S3Store

LATEST = "latest"
DEFAULT_CACHE = Path(os.environ.get("GENPT_CACHE", Path.home() / ".cache" / "genpt" / "bundles"))


def prefix(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def pointer_version(raw: bytes, where: str) -> str:
    """The VERSION named by a `latest` pointer's JSON body."""
    try:
        version = json.loads(raw)["version"]
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"{where}: not a {{'version': ...}} pointer ({e})") from None
    if not isinstance(version, str) or version in ("", ".", "..") or "/" in version:
        raise RegistryError(f"{where}: bad version {version!r}")
    return version


def resolve(store, base: str, version: str | None) -> str:
    """base = models/NAME; version None or `latest` -> the version `latest` names."""
    if version not in (None, LATEST):
        return version
    raw = store.get_bytes(f"{base}/{LATEST}")
    if raw is None:
        raise RegistryError(f"{store.uri}/{base}: nothing published yet (no `{LATEST}`)")
    return pointer_version(raw, f"{store.uri}/{base}/{LATEST}")


def ensure_new(store, name: str, version: str) -> None:
    if store.get_bytes(f"{prefix(name, version)}/{MANIFEST}") is not None:
        raise RegistryError(f"{store.uri}/{prefix(name, version)} already published; immutable")


def publish(store, name: str, version: str, root: Path, manifest: dict) -> None:
    """Upload root's listed files, then manifest.json, then `latest`. If any upload up to
    the manifest fails, what was uploaded is removed again (manifest first), so that no
    partial version stays behind; if the store cannot be reached for that either, the
    error says what is left and that `genpt registry gc --delete` removes it."""
    dst = prefix(name, version)
    sent: list[str] = []
    try:
        for rel in manifest["files"]:
            sent.append(f"{dst}/{rel}")  # before the put: a failed put may still land
            store.put_file(sent[-1], root / rel)
        sent.append(f"{dst}/{MANIFEST}")
        store.put_bytes(sent[-1], dumps(manifest))  # the version now exists
    except BaseException as e:
        left = rollback(store, sent)
        if left and isinstance(e, RegistryError):
            raise RegistryError(
                f"{e}; {left} object(s) of the partial version are left under "
                f"{store.uri}/{dst}/ without a manifest (no reader sees them): "
                "`genpt registry gc --delete` removes them once the store answers"
            ) from None
        raise
    store.put_bytes(f"models/{name}/{LATEST}", dumps({"version": version}))


def rollback(store, keys: list[str]) -> int:
    """Delete `keys`, the manifest (the last) first; stops at the first failure (the
    store is gone: each further key would wait out its retries). How many are left."""
    for i, key in enumerate(reversed(keys)):
        try:
            store.delete(key)
        except RegistryError:
            return len(keys) - i
    return 0


def download(store, src: str, dest: Path) -> dict:
    """The bundle at key prefix `src` -> dest, all verified, or dest untouched."""
    from genpt.io import atomic_dir

    raw = store.get_bytes(f"{src}/{MANIFEST}")
    if raw is None:
        raise RegistryError(f"{store.uri}/{src}: no such version (no {MANIFEST})")
    manifest = parse_manifest(raw, f"{store.uri}/{src}/{MANIFEST}")
    with atomic_dir(dest) as d:
        (d / MANIFEST).write_bytes(raw)
        for rel in manifest["files"]:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            store.get_file(f"{src}/{rel}", d / rel)
        verify_dir(d)
    return manifest


def fetch(store, name: str, dest: str | Path, version: str | None = None) -> dict:
    """NAME/VERSION (default: latest) -> dest, a new or empty directory."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RegistryError(f"{dest}: exists and is not an empty directory")
    version = resolve(store, f"models/{name}", version)
    return download(store, prefix(name, version), dest)


def open_bundle(src: str | Path, cache_dir: str | Path = DEFAULT_CACHE) -> Path:
    """A verified local bundle directory for what `publish` or `export` produced.

    src: a bundle directory (artifacts/export, a registry's models/NAME/VERSION), a
    registry's models/NAME/latest pointer file, or s3://BUCKET/models/NAME/VERSION|latest
    (downloaded into cache_dir/BUCKET/models/NAME/VERSION, and used again while its
    manifest is the store's and its files verify: a cache filled from another store, or
    before a version was re-published, is downloaded again).
    """
    from genpt.stack.storage import parse_s3_uri

    if str(src).startswith("s3://"):
        bucket, key = parse_s3_uri(str(src))
        store = S3Store(bucket)
        base, _, version = key.strip("/").rpartition("/")
        version = resolve(store, base, version)
        dest = Path(cache_dir, bucket, base, version)
        cached, remote = dest / MANIFEST, store.get_bytes(f"{base}/{version}/{MANIFEST}")
        if cached.is_file() and cached.read_bytes() == remote:
            try:
                verify_dir(dest)
                return dest  # cached and intact
            except IntegrityError:
                pass  # downloaded again below
        download(store, f"{base}/{version}", dest)
        return dest
    root = Path(src)
    if root.is_file() and root.name == LATEST:
        root = root.parent / pointer_version(root.read_bytes(), str(root))
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory")
    verify_dir(root)
    return root
