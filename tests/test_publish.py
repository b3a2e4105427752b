"""genpt publish / fetch: local registry, real SeaweedFS, failures mid-publish, bad credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from genpt.bundle import IntegrityError, RegistryError, sha256_file
from genpt.bundle.stores import S3Store
from genpt.params import load_params
from genpt.stack import seaweedfs as stack
from tasks import publish
from tests.conftest import seaweedfs


@pytest.fixture
def artifacts(tmp_path) -> Path:
    """A small but complete artifacts tree as the pipeline writes it."""
    a = tmp_path / "artifacts"
    files = {
        "tokenizer/tokenizer.json": '{"model": {}}',
        "tokens/manifest.json": json.dumps(
            {
                "vocab_size": 1024,
                "dtype": "uint16",
                "files": ["data/corpus/a.txt"],
                "train": [{"file": "train.bin", "tokens": 900}],
                "val": [{"file": "val.bin", "tokens": 100}],
            }
        ),
        "pretrain/hf/config.json": '{"model_type": "gpt2"}',
        "pretrain/metrics.json": '{"step": 20, "val/loss": 6.4, "val/perplexity": 600.0}',
        "finetune/authors/task.json": '{"task_type": "classification"}',
        "finetune/authors/metrics.json": '{"dev/accuracy": 0.3, "dev/majority_baseline": 0.27}',
        "eval/authors/metrics.json": '{"accuracy": 0.3, "examples": 1000}',
        # above the quality gate's default thresholds (test_gate.py): 30% of 1,000 dev rows
        # right against the trivial baseline's 27%, and the ablation report's average gain
        "eval/authors/predictions.json": json.dumps(
            {"gold": [0] * 270 + [1] * 730, "pred": [0] * 270 + [1] * 30 + [2] * 700, "baseline": 0}
        ),
        "report/metrics.json": json.dumps(
            {
                "datasets": {"authors": {"baseline": 27.0}},
                "average": {"gain_pretraining": {"mean": 4.0, "lo": 2.0, "hi": 6.0}},
            }
        ),
        "live/pretrain/plots/metrics/train/loss.tsv": "step\tloss\n1\t7.0\n2\t6.5\n",
        "live/pretrain/plots/metrics/val/loss.tsv": "step\tloss\n2\t6.6\n",
        "live/finetune/authors/plots/metrics/train/loss.tsv": "step\tloss\n1\t4.6\n2\t4.5\n",
        "live/finetune/authors/plots/metrics/dev/accuracy.tsv": "step\taccuracy\n2\t0.3\n",
        "live/evaluate/authors/plots/sklearn/confusion_matrix.json": json.dumps(
            [
                {"actual": "austen", "predicted": "austen"},
                {"actual": "twain", "predicted": "austen"},
            ]
        ),
    }
    for rel, text in files.items():
        (a / rel).parent.mkdir(parents=True, exist_ok=True)
        (a / rel).write_text(text)
    (a / "pretrain/hf/model.safetensors").write_bytes(os.urandom(300_000))
    (a / "finetune/authors/head.safetensors").write_bytes(os.urandom(4_000))
    return a


def _params(artifacts: Path, *extra: str):
    root = Path(__file__).resolve().parents[1]
    p = load_params(
        root / "params.yaml",
        [
            f"paths.artifacts={artifacts}",
            f"publish.local_dir={artifacts.parent / 'registry'}",
            "publish.retries=2",
            "publish.backoff_s=0.05",
            *extra,
        ],
    )
    return p.model_copy(update={"datasets": {"authors": p.datasets["authors"]}})  # the fixture's


def test_local_publish_then_fetch_verifies(artifacts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for k in ("GENPT_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(k, raising=False)
    p = _params(artifacts)
    receipt = publish.run(p, version="v1")
    bundle = tmp_path / "registry/models/genpt/v1"
    assert receipt["uri"] == f"{bundle}/" and receipt["format"] == "hf"
    assert json.loads((bundle.parent / "latest").read_text()) == {"version": "v1"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    for rel in (
        "README.md",
        "params.yaml",
        "pretrain/model.safetensors",
        "plots/pretrain_loss.png",
        "plots/confusion_authors.png",
        "metrics/eval.json",
        "tokenizer/tokenizer.json",
    ):
        assert manifest["files"][rel]["sha256"] == sha256_file(bundle / rel)
    assert manifest["lineage"]["params"]["model"]["preset"] == p.model.preset
    card = (bundle / "README.md").read_text()
    assert "![Pre-training loss (L1)](plots/pretrain_loss.png)" in card

    got = publish.fetch(p, tmp_path / "got")
    assert got["version"] == "v1"
    with pytest.raises(RegistryError, match="immutable"):
        publish.run(p, version="v1")

    (bundle / "pretrain/model.safetensors").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="model.safetensors"):
        publish.fetch(p, tmp_path / "got2")


def test_onnx_bundle_replaces_hf_checkpoints(artifacts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (artifacts / "export").mkdir()
    (artifacts / "export/model.onnx").write_bytes(b"onnx")
    receipt = publish.run(_params(artifacts), version="v1", target="local")
    files = json.loads((tmp_path / "registry/models/genpt/v1/manifest.json").read_text())["files"]
    assert receipt["format"] == "onnx" and "onnx/model.onnx" in files
    assert not any(f.startswith(("pretrain/", "finetune/")) for f in files)


def test_s3_publish_then_fetch_verifies(s3_env, artifacts, tmp_path):
    p = _params(artifacts)
    receipt = publish.run(p, version="v1")
    assert receipt["uri"] == "s3://genpt-models/models/genpt/v1/"
    s3 = stack._client(s3_env)
    latest = s3.get_object(Bucket="genpt-models", Key="models/genpt/latest")["Body"].read()
    assert json.loads(latest) == {"version": "v1"}
    got = publish.fetch(p, tmp_path / "got")
    assert (tmp_path / "got/pretrain/model.safetensors").read_bytes() == (
        artifacts / "pretrain/hf/model.safetensors"
    ).read_bytes()
    assert len(got["files"]) == receipt["files"] - 1


def test_server_killed_mid_publish_keeps_latest(artifacts, tmp_path, monkeypatch):
    state = tmp_path / "weed"
    monkeypatch.chdir(tmp_path)
    with seaweedfs(state) as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        p = _params(artifacts)
        publish.run(p, version="v1")

        put, uploads = S3Store.put_file, []

        def put_then_die(self, key, path):
            uploads.append(key)
            if len(uploads) == 4:  # the server dies part-way through v2
                stack.kill(server.pid)
            return put(self, key, path)

        monkeypatch.setattr(S3Store, "put_file", put_then_die)
        with pytest.raises(RegistryError, match=r"upload models/genpt/v2/.*unavailable after 2"):
            publish.run(p, version="v2")
        monkeypatch.setattr(S3Store, "put_file", put)

        server = stack.up(state)  # same data dir, new ports
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        assert publish.fetch(p, tmp_path / "got")["version"] == "v1"
        with pytest.raises(RegistryError, match="no such version"):
            publish.fetch(p, tmp_path / "got2", version="v2")
        assert publish.run(p, version="v2")["version"] == "v2"  # a retry completes it
        assert publish.fetch(p, tmp_path / "got3")["version"] == "v2"


def test_wrong_credentials_clear_error_without_secret(s3_env, artifacts, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
    with pytest.raises(RegistryError, match="refused the credentials") as e:
        publish.run(_params(artifacts), version="v9")
    assert "wrong-secret-value-123" not in str(e.value)
    assert s3_env.secret_key not in str(e.value)


def test_missing_bucket_clear_error(s3_env, artifacts):
    with pytest.raises(RegistryError, match="bucket does not exist"):
        publish.run(_params(artifacts, "publish.bucket=no-such-bucket"), version="v9")


def test_no_credentials_clear_error(s3_env, artifacts, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(RegistryError, match="no S3 credentials"):
        publish.run(_params(artifacts, "publish.target=s3"), version="v9")


class _Flaky:
    """Unit test of the retry loop only (the real server is exercised above)."""

    def __init__(self, failures: int, code: str):
        self.failures, self.code, self.calls = failures, code, 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise ClientError({"Error": {"Code": self.code}}, "PutObject")
        return "ok"


def test_retries_transient_errors_with_backoff():
    store = S3Store("b", retries=3, backoff_s=0.0, client=object())
    flaky = _Flaky(2, "SlowDown")
    assert store._call(flaky, "upload x") == "ok" and flaky.calls == 3
    with pytest.raises(RegistryError, match="unavailable after 3 attempts"):
        store._call(_Flaky(5, "503"), "upload x")
    once = _Flaky(5, "AccessDenied")
    with pytest.raises(RegistryError, match="refused the credentials"):
        store._call(once, "upload x")
    assert once.calls == 1  # permanent errors are not retried
