"""What a registry holds: its versions (`genpt registry list`) and the objects no complete
version owns (`genpt registry gc`).

A version is complete when models/NAME/VERSION/manifest.json is there and every file it
lists is too; readers see only those. Anything else under models/ is an orphan: the
objects of a version without a manifest (an upload that failed before it, e.g. under an
older genpt that did not remove them), objects of a version that its manifest does not
list, and stray keys (a local store's temp files). `latest` pointers are kept.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass, field

from genpt.bundle.manifest import MANIFEST, IntegrityError, parse_manifest
from genpt.bundle.registry import LATEST, pointer_version
from genpt.bundle.stores import RegistryError, StoredKey

ROOT = "models/"


@dataclass
class Version:
    name: str
    version: str
    files: int = 0  # listed in its manifest
    missing: int = 0  # listed but absent (a damaged version)
    created: str | None = None
    latest: bool = False


@dataclass
class Inventory:
    versions: list[Version] = field(default_factory=list)
    orphans: list[StoredKey] = field(default_factory=list)


def inventory(store) -> Inventory:
    """Every complete (or damaged) version, and every orphan, under models/."""
    by_version: dict[tuple[str, str], dict[str, StoredKey]] = defaultdict(dict)
    pointers, out = {}, Inventory()
    for k in store.keys(ROOT):
        parts = k.key[len(ROOT) :].split("/", 2)
        if len(parts) == 2 and parts[1] == LATEST:
            pointers[parts[0]] = k
        elif len(parts) == 3:
            by_version[parts[0], parts[1]][parts[2]] = k
        else:
            out.orphans.append(k)  # a stray key, e.g. an interrupted local write's temp file
    latest = {}
    for name, k in pointers.items():
        with suppress(RegistryError):  # a bad pointer: listed without a `latest` mark
            latest[name] = pointer_version(store.get_bytes(k.key) or b"", k.key)
    for (name, version), files in sorted(by_version.items()):
        raw = store.get_bytes(f"{ROOT}{name}/{version}/{MANIFEST}") if MANIFEST in files else None
        try:
            manifest = parse_manifest(raw, f"{name}/{version}") if raw else None
        except IntegrityError:
            manifest = None  # unreadable: not a version a reader can open
        if manifest is None:
            out.orphans += files.values()
            continue
        listed = set(manifest["files"])
        out.versions.append(
            Version(
                name,
                version,
                len(listed),
                len(listed - set(files)),
                manifest.get("created"),
                latest.get(name) == version,
            )  # fmt: skip
        )
        out.orphans += [k for rel, k in files.items() if rel not in listed | {MANIFEST}]
    out.orphans.sort()
    return out


def gc(store, delete: bool = False, min_age_s: float = 3600.0) -> tuple[list[StoredKey], list]:
    """(orphans, kept): the orphans whose version's newest object is older than `min_age_s`
    (removed if `delete`), and the others, kept: they may be an upload still running."""
    orphans = inventory(store).orphans
    newest: dict[str, float] = defaultdict(float)
    for k in orphans:
        newest[_group(k.key)] = max(newest[_group(k.key)], k.mtime)
    now = time.time()
    old = [k for k in orphans if now - newest[_group(k.key)] >= min_age_s]
    if delete:
        for k in old:
            store.delete(k.key)
    return old, [k for k in orphans if k not in old]


def _group(key: str) -> str:
    """models/NAME/VERSION of a key (models/NAME for a stray key beside the versions)."""
    return "/".join(key.split("/")[:3])
