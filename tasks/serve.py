"""Serving exported bundles: fetch (local dir or S3), verify, predict and generate.

A bundle is `genpt export`'s directory (or `genpt publish`'s copy of it at
s3://BUCKET/models/NAME/VERSION/, with s3://BUCKET/models/NAME/latest holding
{"version": "..."}): one sub-directory per model plus manifest.json. Every file is
checked against the manifest's sha256 before anything is loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from tasks.errors import GenptError
from tasks.manifest import MANIFEST, IntegrityError, verify_dir

DEFAULT_CACHE = Path(os.environ.get("GENPT_CACHE", Path.home() / ".cache" / "genpt" / "bundles"))


class BundleError(GenptError, ValueError):
    """A bundle location or layout problem."""


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise IntegrityError(f"{root}: no {MANIFEST}; not a bundle (run `genpt export`)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{path}: unreadable manifest ({e})") from None
    for rel in files:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise IntegrityError(f"{path}: unsafe path {rel!r}")
    return manifest


def verify_bundle(root: str | Path) -> Path:
    """Every manifest entry present with the right sha256, and no unlisted model files."""
    root = Path(root)
    manifest = _read_manifest(root)
    verify_dir(root, manifest)
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in manifest["files"]:
            raise IntegrityError(f"{p}: not listed in {MANIFEST}")
    return root


def resolve_s3_version(client, bucket: str, prefix: str) -> str:
    """.../NAME/latest -> .../NAME/VERSION via the pointer object's JSON body."""
    if prefix.rstrip("/").rsplit("/", 1)[-1] != "latest":
        return prefix.rstrip("/")
    key = prefix.rstrip("/")
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        version = json.loads(body)["version"]
    except client.exceptions.NoSuchKey:
        raise BundleError(f"s3://{bucket}/{key}: no such pointer object") from None
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"s3://{bucket}/{key}: not a {{'version': ...}} pointer ({e})") from None
    if not isinstance(version, str) or not version or "/" in version:
        raise BundleError(f"s3://{bucket}/{key}: bad version {version!r}")
    return f"{key.rsplit('/', 1)[0]}/{version}"


def fetch_s3(uri: str, cache_dir: str | Path = DEFAULT_CACHE, endpoint: str | None = None) -> Path:
    """Download the bundle at `uri` (VERSION or latest) into the cache and verify it."""
    from tasks.io import atomic_dir
    from tasks.storage import parse_s3_uri, s3_client

    client = s3_client(endpoint)
    bucket, prefix = parse_s3_uri(uri)
    prefix = resolve_s3_version(client, bucket, prefix)
    dest = Path(cache_dir, bucket, prefix)
    if (dest / MANIFEST).is_file():
        try:
            return verify_bundle(dest)  # cached and intact
        except IntegrityError:
            pass  # re-download below
    try:
        raw = client.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    except client.exceptions.NoSuchKey:
        raise BundleError(f"s3://{bucket}/{prefix}/{MANIFEST}: missing (not a bundle)") from None
    with atomic_dir(dest) as d:
        (d / MANIFEST).write_bytes(raw)
        manifest = _read_manifest(d)
        for rel in manifest["files"]:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, f"{prefix}/{rel}", str(d / rel))
        verify_bundle(d)
    return dest


def open_bundle(src: str | Path, cache_dir: str | Path = DEFAULT_CACHE) -> Path:
    """A verified local bundle directory for a local path or an s3:// URI."""
    if str(src).startswith("s3://"):
        return fetch_s3(str(src), cache_dir)
    root = Path(src)
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory")
    return verify_bundle(root)


def model_dir(root: Path, name: str | None) -> Path:
    """The model `name` in a bundle; without a name, the bundle's only task model."""
    if (root / "export.json").is_file() and name is None:
        return root  # a single-model bundle
    models = sorted(p.name for p in root.iterdir() if (p / "export.json").is_file())
    if name is None:
        tasks = [m for m in models if m != "lm"]
        if len(tasks) != 1:
            raise BundleError(f"{root}: choose a model with --model (has: {models})")
        name = tasks[0]
    if name not in models:
        raise BundleError(f"{root}: no model {name!r} (has: {models})")
    return root / name


# --- batch prediction -----------------------------------------------------------------


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a bad line fails with file and line number."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise BundleError(f"{path}: line {i}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise BundleError(f"{path}: line {i}: expected a JSON object")
            rows.append(row)
    return rows


def predict_jsonl(model, records: list[dict], batch_size: int = 32) -> Iterator[dict]:
    """Each input record with `prediction` (and `logits`) added, in order, with progress."""
    from tqdm.auto import tqdm

    examples = list(model.encode(records))  # every row transformed (and checked) first
    with tqdm(total=len(records), desc="predict", unit="row", mininterval=1.0) as bar:
        for i in range(0, len(examples), batch_size):
            outs = model.format(model.logits(examples[i : i + batch_size]))
            for rec, out in zip(records[i : i + batch_size], outs, strict=True):
                yield {**rec, **out}
            bar.update(len(outs))


def predict(
    src: str,
    input_path: str,
    output_path: str,
    name: str | None = None,
    variant: str = "fp32",
    device: str = "auto",
    batch_size: int = 32,
) -> dict:
    from model.onnx_runtime import OnnxTaskModel
    from tasks.io import atomic_write_text

    records = read_jsonl(input_path)  # bad input fails before loading anything
    model = OnnxTaskModel(model_dir(open_bundle(src), name), variant, device)
    try:
        rows = list(predict_jsonl(model, records, batch_size))
    except ValueError as e:  # a record missing a field its task type needs
        raise BundleError(f"{input_path}: {e}") from None
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(output_path, "".join(line + "\n" for line in lines))
    return {"rows": len(lines), "output": output_path, "providers": model.providers}


def generate(src: str, prompt: str, variant: str = "fp32", device: str = "auto", **kw) -> str:
    from model.onnx_runtime import OnnxLM

    lm = OnnxLM(model_dir(open_bundle(src), "lm"), variant, device)
    return lm.generate(prompt, **kw)
