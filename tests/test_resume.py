"""genpt/resume.py: a persisted checkpoint is resumed only for the same run definition."""

from __future__ import annotations

from pathlib import Path

from genpt.params import load_params
from genpt.resume import FINGERPRINT, prepare

ROOT = Path(__file__).resolve().parents[1]


def _params(art: Path, *extra: str):
    return load_params(ROOT / "params.yaml", [f"paths.artifacts={art}", *extra])


def test_resume_only_the_same_run(tmp_path):
    art = tmp_path / "artifacts"
    (art / "tokens").mkdir(parents=True)
    (art / "tokens/manifest.json").write_text('{"train": []}')
    ckpt = art / "pretrain/ckpt.pt"

    assert prepare(_params(art)) is False  # nothing to resume; records the run
    assert (art / "pretrain" / FINGERPRINT).exists()
    ckpt.write_bytes(b"checkpoint")  # what an interrupted run leaves behind
    assert prepare(_params(art)) is True and ckpt.exists()

    assert prepare(_params(art, "pretrain.lr=3e-4")) is False  # another run: start over
    assert not ckpt.exists()
    ckpt.write_bytes(b"checkpoint")
    (art / "tokens/manifest.json").write_text('{"train": ["other shards"]}')
    assert prepare(_params(art, "pretrain.lr=3e-4")) is False and not ckpt.exists()


def test_resume_across_world_sizes_that_keep_the_global_batch(tmp_path):
    art = tmp_path / "artifacts"
    (art / "tokens").mkdir(parents=True)
    (art / "tokens/manifest.json").write_text('{"train": []}')
    ckpt = art / "pretrain/ckpt.pt"
    two = _params(art, "pretrain.batch_size=4", "pretrain.nproc_per_node=2")

    assert prepare(two, world=2) is False
    ckpt.write_bytes(b"checkpoint of 2 processes x 4 sequences")
    one = _params(art, "pretrain.batch_size=8", "pretrain.nproc_per_node=1")
    assert prepare(one, world=1) is True  # 8 = 8: resumable, however launched
    accum = _params(
        art,
        "pretrain.batch_size=2",
        "pretrain.grad_accum=2",
        "pretrain.nnodes=2",
        "pretrain.rdzv_endpoint=10.0.0.1:29400",
    )
    assert prepare(accum, world=2) is True

    assert prepare(_params(art, "pretrain.batch_size=4"), world=1) is False  # 4 != 8
    assert not ckpt.exists()
