"""Bundles (local, and published to a real SeaweedFS), manifest checks, `genpt predict` /
`generate`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genpt.bundle import (
    BundleError,
    IntegrityError,
    RegistryError,
    model_dir,
    open_bundle,
    write_manifest,
)
from genpt.serve import read_jsonl
from model.onnx_runtime import check_providers, cuda_problem, pick, providers_for, session

ROOT = Path(__file__).resolve().parents[1]


def _bundle(root: Path) -> Path:
    (root / "m").mkdir(parents=True)
    (root / "m" / "export.json").write_text("{}")
    (root / "m" / "model.onnx").write_bytes(b"\x08\x07weights")
    write_manifest(root)
    return root


def test_verified_bundle_and_tampering(tmp_path):
    root = _bundle(tmp_path / "b")
    assert open_bundle(root) == root
    assert model_dir(root, None) == root / "m"
    (root / "m" / "model.onnx").write_bytes(b"\x08\x07weightz")
    with pytest.raises(IntegrityError, match=r"m/model.onnx: sha256 does not match"):
        open_bundle(root)


def test_unlisted_or_missing_files_refused(tmp_path):
    root = _bundle(tmp_path / "b")
    (root / "m" / "extra.onnx").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="extra.onnx: not listed"):
        open_bundle(root)
    (root / "m" / "extra.onnx").unlink()
    (root / "m" / "export.json").unlink()
    with pytest.raises(IntegrityError, match="export.json: listed in manifest.json but missing"):
        open_bundle(root)
    with pytest.raises(IntegrityError, match="no manifest.json"):
        open_bundle(root / "m")
    with pytest.raises(BundleError, match="no such bundle"):
        open_bundle(tmp_path / "nope")


def test_read_jsonl_names_the_bad_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": \n')
    with pytest.raises(BundleError, match=r"in.jsonl: line 3: not JSON"):
        read_jsonl(p)


def test_cpu_fallback_is_logged_and_cuda_demand_fails(tmp_path, caplog):
    """The decision for the providers given (a build without CUDA), on any machine."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, tmp_path / "r.onnx")
    cpu_only = ["CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING):
        sess = session(tmp_path / "r.onnx", "auto", available=cpu_only)
    assert sess.get_providers() == cpu_only
    assert "CUDA not usable (this onnxruntime build has no CUDA provider)" in caplog.text
    assert "r.onnx on CPUExecutionProvider" in caplog.text
    with pytest.raises(RuntimeError, match=r"r.onnx: CUDA not usable \(this onnxruntime build"):
        session(tmp_path / "r.onnx", "cuda", available=cpu_only)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert session(tmp_path / "r.onnx", "cpu").get_providers() == cpu_only
    assert not caplog.text  # cpu asked for: nothing to report


def test_provider_decision():
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    assert providers_for("auto", None) == [cuda, cpu]
    assert providers_for("cuda", None) == [cuda, cpu]
    assert providers_for("auto", "no NVIDIA driver") == [cpu]
    assert providers_for("cpu", None) == [cpu]
    with pytest.raises(ValueError, match="expected auto, cpu or cuda"):
        providers_for("tpu", None)
    check_providers("m.onnx", "auto", [cuda, cpu], None)  # CUDA running: nothing raised
    with pytest.raises(RuntimeError, match=r"m.onnx: CUDA not usable \(the provider failed"):
        check_providers("m.onnx", "cuda", [cpu], None)  # asked for, offered, yet not loaded


def test_pick_filters():
    import numpy as np

    rng = np.random.default_rng(0)
    logits = np.array([0.0, 5.0, 4.9, -3.0])
    assert pick(logits, True, 1.0, None, None, rng) == 1
    draws = {pick(logits, False, 1.0, 2, None, rng) for _ in range(200)}
    assert draws == {1, 2}  # top-k keeps the two likeliest
    assert {pick(logits, False, 1.0, None, 0.3, rng) for _ in range(50)} == {1}


# --- with the tiny exported pipeline ---------------------------------------------------


def _genpt(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "genpt.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", **(env or {})},
    )


@pytest.mark.slow
def test_predict_cli_matches_pytorch(tiny_export, tmp_path):
    from genpt.ingest.loaders import load_split
    from model.finetune import encode, predict
    from model.task_model import TaskModel
    from model.tokenizer import load_tokenizer, special_ids

    params = tiny_export
    rows = load_split(params.dataset("authors"), "dev")[:40]
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        "".join(json.dumps({"id": i, "text": r["text"]}) + "\n" for i, r in enumerate(rows))
    )
    out = tmp_path / "out.jsonl"
    res = _genpt("predict", str(inp), "--bundle", str(params.artifacts("export")), "-o", str(out))
    assert res.returncode == 0, res.stderr
    # the plain fallback message exactly when the code finds CUDA unusable here
    assert ("CUDA not usable" in res.stderr) == (cuda_problem() is not None), res.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == list(range(40))

    src = params.artifacts("finetune", "authors")
    model, meta = TaskModel.load(src)
    tok = load_tokenizer(src)
    ds = params.dataset("authors")
    ref = predict(
        model,
        encode(rows, "classification", tok, meta["max_len"], ds.labels),
        special_ids(tok)["pad"],
    )
    assert [g["prediction"] for g in got] == [ds.labels[k] for k in ref.argmax(-1)]


@pytest.mark.slow
def test_predict_refuses_tampered_bundle_and_bad_rows(tiny_export, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_export.artifacts("export"), bundle)
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"txt": "no text field"}\n')
    res = _genpt("predict", str(inp), "--bundle", str(bundle), "-o", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2
    assert "in.jsonl: row 1: missing field(s) ['text']" in res.stderr
    assert not (tmp_path / "o.jsonl").exists()

    with open(bundle / "authors" / "onnx" / "model.onnx", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    inp.write_text('{"text": "hello"}\n')
    res = _genpt("predict", str(inp), "--bundle", str(bundle), "-o", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2
    assert "authors/onnx/model.onnx: sha256 does not match manifest.json" in res.stderr


@pytest.mark.slow
def test_generate_cli_bundle_equals_pytorch_greedy(tiny_export):
    bundle = str(tiny_export.artifacts("export"))
    hf = str(tiny_export.artifacts("pretrain", "hf"))
    args = ["It was the best of times", "--greedy", "--max-new-tokens", "16"]
    a = _genpt("generate", *args, "--bundle", bundle)
    b = _genpt("generate", *args, "--model", hf)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    # 16 greedy tokens, printed (a 60-step model may well repeat one token, e.g. a newline)
    assert a.stdout == b.stdout and len(a.stdout) > 1


# --- published to S3 (a real SeaweedFS), read back from `latest` ---------------------


@pytest.mark.slow
def test_publish_to_s3_then_predict_and_generate_from_latest(tiny_export, s3_env, tmp_path):
    """What `genpt publish` writes is what `--bundle s3://.../NAME/latest` reads."""
    from genpt import serve
    from genpt.stack.seaweedfs import _client

    env = {**s3_env.env(), "GENPT_CACHE": str(tmp_path / "cache")}
    art = ["-S", f"paths.artifacts={tiny_export.artifacts()}", "-S", "gate.enabled=false"]
    res = _genpt("publish", "--version", "v1", *art, env=env)
    assert res.returncode == 0, res.stderr
    latest = "s3://genpt-models/models/genpt/latest"

    rows = [{"id": i, "text": t} for i, t in enumerate(["The creature stood.", "Alice ran."])]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    res = _genpt(
        "predict", str(inp), "--bundle", latest, "--model", "authors", "-o", str(out), env=env
    )
    assert res.returncode == 0, res.stderr
    local = tmp_path / "local.jsonl"
    serve.predict(str(tiny_export.artifacts("export")), str(inp), str(local), "authors")
    assert out.read_text() == local.read_text()
    assert (tmp_path / "cache/genpt-models/models/genpt/v1/onnx/authors/task.json").is_file()

    kw = dict(greedy=True, max_new_tokens=12)
    ref = serve.generate(str(tiny_export.artifacts("export")), "It was", "fp32", "cpu", **kw)
    assert serve.generate(latest, "It was", "fp32", "cpu", **kw) == ref

    # A tampered object in the bucket is refused on a fresh download, and nothing is cached.
    key = "models/genpt/v1/onnx/authors/task.json"
    _client(s3_env).put_object(Bucket="genpt-models", Key=key, Body=b"{}")
    with pytest.raises(IntegrityError, match="authors/task.json: sha256 does not match"):
        open_bundle(latest, tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "genpt-models/models/genpt/v1").exists()
    with pytest.raises(RegistryError, match="nothing published yet"):
        open_bundle("s3://genpt-models/models/other/latest", tmp_path / "cache2")


def test_a_cache_filled_from_another_store_is_not_served(published, s3_env, tmp_path):
    """The cache is keyed by bucket, name and version; what it holds is used only while its
    manifest is the store's (another endpoint, or a re-published version, has other files)."""
    from genpt.bundle import registry
    from genpt.bundle.manifest import MANIFEST

    store = registry.S3Store("genpt-models")
    for f in sorted(p for p in published.rglob("*") if p.is_file()):  # `published` as v7
        store.put_file(f"models/other/v7/{f.relative_to(published)}", f)
    cache = tmp_path / "cache"
    stale = cache / "genpt-models/models/other/v7"
    shutil.copytree(published, stale)  # a self-consistent bundle, but not the store's
    manifest = json.loads((stale / MANIFEST).read_text())
    manifest["lineage"] = {"from": "another store"}
    (stale / MANIFEST).write_text(json.dumps(manifest))
    got = open_bundle("s3://genpt-models/models/other/v7", cache)
    assert (got / MANIFEST).read_bytes() == (published / MANIFEST).read_bytes()


@pytest.mark.slow
def test_local_registry_version_and_latest_are_bundles(tiny_export, tmp_path):
    from genpt.params import load_params
    from tasks import publish

    p = load_params(
        ROOT / "params.yaml",
        [
            f"paths.artifacts={tiny_export.artifacts()}",
            f"publish.local_dir={tmp_path / 'reg'}",
            "gate.enabled=false",
        ],
    )
    publish.run(p, version="v1", target="local")
    models = tmp_path / "reg/models/genpt"
    for src in (models / "v1", models / "latest"):
        assert model_dir(open_bundle(src), "lm") == models / "v1/onnx/lm"
    (models / "v1/onnx/authors/stray.txt").write_text("x")
    with pytest.raises(IntegrityError, match="stray.txt: not listed"):
        open_bundle(models / "latest")
