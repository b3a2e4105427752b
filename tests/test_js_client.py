"""transformers.js (a stock client) runs the published LM and generates what genpt does.

Needs Node and tests/js/node_modules (`npm ci` in tests/js, as .ci/run does); skipped only
where `node` itself is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
NEW = 40
pytestmark = pytest.mark.skipif(NODE is None, reason="node not on PATH (transformers.js check)")


def _prompts(tok, n_ctx: int) -> list[str]:
    text = (ROOT / "data/corpus/frankenstein.txt").read_text(encoding="utf-8")[5000:9000]
    long = tok.decode(tok(text, add_special_tokens=False)["input_ids"][: n_ctx - NEW - 4])
    return [
        "It was the best of times",
        "Alice was beginning to get very tired of sitting by her sister on the bank",
        "“Oh, ” said the Queen,",
        long,  # fills the context up to max_new_tokens: the cache grows to n_ctx
    ]


@pytest.fixture(scope="module")
def untrained_lm(published, tmp_path_factory) -> Path:
    """The published LM's shape, untrained and with an untied output head: its greedy
    output changes from token to token (the tiny trained LM soon repeats one token, a tied
    untrained one copies its input), so a cache or position mistake would show."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tasks import export
    from tasks.params import ExportConfig

    src, tmp = published / "onnx" / "lm", tmp_path_factory.mktemp("untrained")
    torch.manual_seed(0)
    cfg = GPT2Config.from_pretrained(src, tie_word_embeddings=False)
    GPT2LMHeadModel(cfg).save_pretrained(tmp / "hf")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, tmp / "hf")
    export.export_lm_dir(tmp / "hf", tmp / "lm", ExportConfig(fp16=False), "It was a dark night")
    return tmp / "lm"


@pytest.mark.slow
@pytest.mark.parametrize("which", ["published", "untrained"])
@pytest.mark.parametrize(("dtype", "variant"), [("fp32", "fp32"), ("q8", "int8")])
def test_transformers_js_greedy_equals_genpt(published, untrained_lm, which, dtype, variant):
    from model.onnx_runtime import OnnxLM

    if not (JS / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.fail(f"{JS}: @huggingface/transformers not installed (run `npm ci` there)")
    lm_dir = published / "onnx" / "lm" if which == "published" else untrained_lm
    lm = OnnxLM(lm_dir, variant, "cpu")
    assert lm.session.get_providers() == ["CPUExecutionProvider"]
    prompts = _prompts(lm.tok, lm.geo["n_ctx"])
    res = subprocess.run(
        [NODE, "generate.mjs", str(lm_dir), str(NEW), dtype],
        input=json.dumps(prompts),
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout.splitlines()[-1])
    empty = (1, lm.geo["n_head"], 0, lm.geo["head_dim"])
    for prompt, js in zip(prompts, results, strict=True):
        ids = lm.tok(prompt, add_special_tokens=False)["input_ids"]
        assert js["prompt_ids"] == ids and len(ids) + NEW <= lm.geo["n_ctx"]
        ours = lm.generate_ids(ids, NEW, greedy=True)
        assert js["new_ids"] == ours and ours
        if which == "untrained":
            assert len(set(ours)) > len(ours) // 2
        assert js["text"] == lm.tok.decode(ours, skip_special_tokens=True)
        logits, _ = lm.step(
            np.array([ids]), len(ids), [np.zeros(empty, np.float32)] * 2 * lm.geo["n_layer"]
        )
        np.testing.assert_allclose(js["last_logits"], logits[0], atol=1e-4)
        print(
            f"{which} {dtype} prompt {len(ids)} tok: {len(ours)} new ({len(set(ours))} distinct), "
            f"{js['tokens_per_s']:.0f} tok/s (js): {ours[:6]} {js['text'][:30]!r}"
        )
