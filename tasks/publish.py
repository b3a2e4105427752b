"""Stage `publish`: a versioned, verifiable model bundle in the registry (S3 or a local dir).

The quality gate runs first; the bundle (genpt/bundle/contents.py) is uploaded atomically
for readers and `latest` moves (genpt.bundle); publish/receipt.json records where it went.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from genpt import artifacts, bundle, quality_gate
from genpt.bundle.contents import build_bundle, default_version
from genpt.io import write_json
from genpt.params import Params


def run(
    params: Params, version: str | None = None, target: str | None = None, force: bool = False
) -> dict:
    cfg = params.publish
    name, version = cfg.name, version or cfg.version or default_version()
    store = bundle.registry_store(params.publish, target)
    store.check()  # credentials and bucket, before any work
    bundle.registry.ensure_new(store, name, version)

    verdict = quality_gate.enforce(params, store, force)  # before any upload

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genpt-publish-") as tmp:
        root = Path(tmp)
        manifest = build_bundle(params, root, name, version, extra={"gate": verdict})
        bundle.publish(store, name, version, root, manifest)
    receipt = {
        "name": name,
        "version": version,
        "uri": f"{store.uri}/{bundle.registry.prefix(name, version)}/",
        "store": store.kind,
        "why": store.why,
        "format": manifest["format"],
        "files": len(manifest["files"]) + 1,
        "bytes": sum(e["bytes"] for e in manifest["files"].values()),
        "seconds": round(time.perf_counter() - t0, 3),
        "gate": {"passed": verdict["passed"], "forced": verdict.get("forced", False)},
    }
    write_json(artifacts.publish_receipt(params), receipt)
    return receipt


def fetch(params: Params, dest: str | Path, version: str | None = None,
          target: str | None = None) -> dict:  # fmt: skip
    """Download NAME/VERSION (default: latest) into dest and verify it against its manifest."""
    return bundle.fetch(
        bundle.registry_store(params.publish, target), params.publish.name, dest, version
    )
