"""Stock clients run the exported LM: transformers.js generates what genpt does, on the
test fixture's LM and on one of the default recipe's shape; every exported model names its
dims as optimum does; the LM takes the empty first-step cache as clients build it.

The transformers.js test needs Node and tests/js/node_modules (`npm ci` in tests/js, as
.ci/run does); skipped only where `node` itself is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import pytest

from model import onnx_export as ox

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
NEW = 40


def _prompts(tok, n_ctx: int) -> list[str]:
    text = (ROOT / "data/corpus/frankenstein.txt").read_text(encoding="utf-8")[5000:9000]
    long = tok.decode(tok(text, add_special_tokens=False)["input_ids"][: n_ctx - NEW - 4])
    return [
        "It was the best of times",
        "Alice was beginning to get very tired of sitting by her sister on the bank",
        "“Oh, ” said the Queen,",
        long,  # fills the context up to max_new_tokens: the cache grows to n_ctx
    ]


class LM(NamedTuple):
    onnx: Path  # the exported lm/ directory
    hf: Path  # the PyTorch model it was exported from


@pytest.fixture(scope="module")
def published_lm(published, tiny_export) -> LM:
    """The tiny pipeline's published LM (the test fixture's 2 x 64 shape)."""
    return LM(published / "onnx" / "lm", tiny_export.artifacts("pretrain", "hf"))


@pytest.fixture(scope="module")
def untrained_lm(published_lm, tmp_path_factory) -> LM:
    """The published LM's shape, untrained and with an untied output head: its greedy
    output changes from token to token (the tiny trained LM soon repeats one token, a tied
    untrained one copies its input), so a cache or position mistake would show."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from genpt import onnx_models as export
    from genpt.params import ExportConfig

    src, tmp = published_lm.onnx, tmp_path_factory.mktemp("untrained")
    torch.manual_seed(0)
    cfg = GPT2Config.from_pretrained(src, tie_word_embeddings=False)
    GPT2LMHeadModel(cfg).save_pretrained(tmp / "hf")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, tmp / "hf")
    export.export_lm_dir(tmp / "hf", tmp / "lm", ExportConfig(fp16=False), "It was a dark night")
    return LM(tmp / "lm", tmp / "hf")


@pytest.fixture(scope="module")
def default_lm(tmp_path_factory) -> LM:
    """The LM of the default recipe's shape (params.yaml as shipped: 4 x 128, vocab 4096),
    pre-trained for 20 steps and exported by the export stage (fp32, fp16, int8)."""
    from genpt.params import load_params
    from tasks import export, pretrain, tokenize

    art = tmp_path_factory.mktemp("default") / "artifacts"
    steps = ["steps=20", "eval_every=20", "ckpt_every=20", "eval_batches=2", "warmup_steps=5"]
    params = load_params(
        ROOT / "params.yaml", [f"paths.artifacts={art}", *(f"pretrain.{s}" for s in steps)]
    )
    tokenize.run(params)
    pretrain.run(params)
    export.run(params)  # no fine-tuned models: the LM only
    return LM(params.artifacts("export", "lm"), params.artifacts("pretrain", "hf"))


def _dims(model: onnx.ModelProto) -> dict[str, list]:
    return {
        v.name: [d.dim_param or d.dim_value or None for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }


@pytest.mark.slow
def test_every_exported_model_names_its_dims_as_optimum(published, default_lm):
    """Each symbolic dim of every exported model, inputs and outputs, is one of ox.DIMS."""
    files = sorted(published.rglob("*.onnx")) + sorted(default_lm.onnx.rglob("*.onnx"))
    kinds = {f.parents[1].name for f in files}
    assert {"lm", "authors", "snli", "stsb", "arc"} <= kinds, kinds  # every task type
    for f in files:
        for name, dims in _dims(onnx.load(f, load_external_data=False)).items():
            bad = [d for d in dims if not isinstance(d, int) and d not in ox.DIMS]
            assert not bad, f"{f}: {name} {dims}: {bad} not among {ox.DIMS}"
    lm = _dims(onnx.load(default_lm.onnx / "onnx" / "model.onnx"))
    assert lm["past_key_values.0.key"][::2] == [ox.BATCH, ox.PAST]
    assert lm["present.0.key"][::2] == [ox.BATCH, ox.TOTAL]
    assert lm["attention_mask"] == [ox.BATCH, ox.TOTAL]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["published", "default"])
def test_empty_cache_as_clients_build_it_matches_pytorch(request, which):
    """The first step on an empty cache sized from the session's input metadata, then a
    step on the cache it returned, against PyTorch. The cache's batch: 0 (what a client
    builds that cannot resolve the name, as transformers.js did with genpt's former
    names), then 1 and 2 (the input's batch, as transformers.js builds it now)."""
    import torch
    from transformers import AutoModelForCausalLM

    from model.onnx_runtime import session

    lm = request.getfixturevalue(f"{which}_lm")
    sess = session(lm.onnx / "onnx" / "model.onnx", "cpu")
    ref_lm = AutoModelForCausalLM.from_pretrained(lm.hf).eval()
    rng = np.random.default_rng(0)
    for cache_batch, batch in [(0, 1), (0, 2), (1, 1), (2, 2)]:
        ids = rng.integers(0, ref_lm.config.vocab_size, (batch, 9))
        with torch.no_grad():
            ref = ref_lm(torch.from_numpy(ids)).logits.numpy()
        past = ox.client_past(sess.get_inputs(), cache_batch)
        mask = np.ones((batch, 9), np.int64)
        first, *present = sess.run(
            None, {"input_ids": ids[:, :-1], "attention_mask": mask[:, :-1], **past}
        )
        past = dict(zip(past, present, strict=True))
        second = sess.run(["logits"], {"input_ids": ids[:, -1:], "attention_mask": mask, **past})[0]
        got = np.concatenate([first, second], axis=1)
        np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=f"cache batch {cache_batch}")


@pytest.mark.slow
@pytest.mark.skipif(NODE is None, reason="node not on PATH (transformers.js check)")
@pytest.mark.parametrize("which", ["published", "untrained", "default"])
@pytest.mark.parametrize(("dtype", "variant"), [("fp32", "fp32"), ("q8", "int8")])
def test_transformers_js_greedy_equals_genpt(request, which, dtype, variant):
    from model.onnx_runtime import OnnxLM

    if not (JS / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.fail(f"{JS}: @huggingface/transformers not installed (run `npm ci` there)")
    lm_dir = request.getfixturevalue(f"{which}_lm").onnx  # only the LM this case needs
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
