"""Pre-training on real text: learning and exact resume (data-parallel: test_distributed.py)."""

import numpy as np
import pytest
import torch

from genpt.ingest import tokens
from genpt.params import load_params
from tasks import pretrain
from tests.conftest import ROOT
from tests.conftest import copy_tokens as _copy_tokens
from tests.conftest import tiny as _params


def unigram_cross_entropy(art) -> float:
    """Val cross-entropy (nats/token) of a unigram model fit on the training tokens."""
    p = load_params(ROOT / "params.yaml", _params(art))
    train, val = tokens.load_shards(p, "train"), tokens.load_shards(p, "val")
    v = 1024
    counts = np.bincount(np.asarray(train.shards[0], dtype=np.int64), minlength=v) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(val.shards[0], dtype=np.int64)].mean())


def test_tiny_pretraining_beats_unigram_baseline(tokens):
    p = load_params(
        ROOT / "params.yaml",
        _params(
            tokens,
            "pretrain.steps=500",  # ~20 s on 2 idle cores
            "pretrain.lr=3e-3",
            "pretrain.batch_size=16",
            "pretrain.seq_len=64",
            "pretrain.eval_every=500",
        ),
    )
    metrics = pretrain.run(p)
    baseline = unigram_cross_entropy(tokens)
    assert metrics["val/loss"] < baseline - 0.5, (metrics["val/loss"], baseline)
    assert (tokens / "pretrain" / "hf" / "model.safetensors").exists()

    # The saved LM loads with stock transformers and generates.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(str(tokens / "pretrain" / "hf"))
    tok = AutoTokenizer.from_pretrained(str(tokens / "pretrain" / "hf"))
    prompt = tok("ROMEO:", return_tensors="pt")
    out = lm.generate(**prompt, max_new_tokens=8, do_sample=False)
    ids = prompt["input_ids"][0].tolist()  # greedy by hand: argmax of a full forward pass
    with torch.no_grad():
        for _ in range(8):
            ids.append(int(lm(torch.tensor([ids])).logits[0, -1].argmax()))
            if ids[-1] == lm.generation_config.eos_token_id:
                break
    assert out[0].tolist() == ids and len(ids) > prompt["input_ids"].shape[1]


def test_resume_matches_uninterrupted_run_bitwise(tokens, tmp_path):
    extra = [
        "pretrain.steps=12",
        "pretrain.ckpt_every=4",
        "pretrain.eval_every=6",
        "pretrain.batch_size=4",
        "pretrain.seq_len=32",
        "model.dropout=0.1",
    ]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    for d in (straight, broken):
        _copy_tokens(tokens, d)
    pretrain.run(load_params(ROOT / "params.yaml", _params(straight, *extra)))
    p = load_params(ROOT / "params.yaml", _params(broken, *extra))
    pretrain.run(p, stop_after=6)  # "crash" at step 6: the last checkpoint is step 4
    ckpt = torch.load(broken / "pretrain" / "ckpt.pt", weights_only=False)
    assert ckpt["step"] == 4 and (ckpt["data"]["epoch"], ckpt["data"]["offset"]) == (0, 16)
    other = load_params(ROOT / "params.yaml", _params(broken, *extra, "pretrain.seq_len=16"))
    with pytest.raises(pretrain.ResumeError, match=r"window 16 of \d+ \(seq_len 32\), but here"):
        pretrain.run(other, resume=True)  # another seq_len cuts other windows: refused
    pretrain.run(p, resume=True)
    a = torch.load(straight / "pretrain" / "ckpt.pt", weights_only=False)["model"]
    b = torch.load(broken / "pretrain" / "ckpt.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
