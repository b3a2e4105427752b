"""CUDA paths of pre-training: bf16 autocast, fused AdamW, flash SDPA (skipped without CUDA)."""

import pytest

from genpt.params import load_params
from tasks import pretrain
from tests.conftest import ROOT, copy_tokens, tiny


@pytest.mark.gpu
@pytest.mark.parametrize("compile_", [False, True])
def test_bf16_pretraining_on_cuda(tokens, tmp_path, compile_):
    copy_tokens(tokens, tmp_path)
    p = load_params(
        ROOT / "params.yaml",
        tiny(
            tmp_path,
            "pretrain.steps=40",
            "pretrain.device=cuda",
            "pretrain.lr=3e-3",
            f"pretrain.compile={compile_}",
            "pretrain.eval_every=20",
        ),
    )
    assert p.pretrain.precision == "auto"  # -> bf16 on CUDA
    m = pretrain.run(p)
    assert m["val/loss"] < 6.0, m
    assert (tmp_path / "pretrain" / "hf" / "model.safetensors").exists()
