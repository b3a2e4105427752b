"""ONNX export: parity with PyTorch on real inputs, int8 accuracy, KV-cache generation, Triton."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from genpt import onnx_models
from genpt.ingest.loaders import load_split
from genpt.params import ExportConfig, load_params
from genpt.triton import triton_config
from model import onnx_export as ox
from model.finetune import encode, predict
from model.inputs import collate, encode_record
from model.onnx_runtime import OnnxLM, OnnxTaskModel, cuda_problem, providers_for, session
from model.schema import missing_choice
from model.task_model import TaskModel
from model.tokenizer import load_tokenizer, special_ids
from tasks import export


def test_gemm_to_matmul_computes_the_same(tmp_path):
    rng = np.random.default_rng(0)
    w, c = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    graph = helper.make_graph(  # y = x @ w.T + c
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    onnx.save(model, tmp_path / "a.onnx")
    onnx.save(ox.gemm_to_matmul(model), tmp_path / "b.onnx")
    ops = [n.op_type for n in onnx.load(tmp_path / "b.onnx").graph.node]
    assert ops == ["MatMul", "Add"]
    ya = session(tmp_path / "a.onnx", "cpu").run(None, {"x": x})[0]
    yb = session(tmp_path / "b.onnx", "cpu").run(None, {"x": x})[0]
    np.testing.assert_allclose(ya, x @ w.T + c, atol=1e-5)
    np.testing.assert_allclose(yb, ya, atol=1e-6)


def test_export_refuses_a_missing_finetuned_model(tmp_path):
    params = load_params(
        "params.yaml", [f"paths.artifacts={tmp_path}", "export.datasets=[authors]"]
    )
    with pytest.raises(FileNotFoundError, match="no fine-tuned model"):
        export.run(params)
    assert not (tmp_path / "export").exists()


def test_triton_config_dims():
    mc = {"kind": "task", "task_type": "multiple_choice", "inputs": ox.TASK_INPUTS}
    cfg = triton_config("arc", mc, {"num_labels": 1}, 16)
    assert 'name: "input_ids" data_type: TYPE_INT64 dims: [ -1, -1 ]' in cfg
    assert 'name: "logits" data_type: TYPE_FP32 dims: [ -1 ]' in cfg
    assert "max_batch_size: 16" in cfg and "dynamic_batching" in cfg
    sts = {"kind": "task", "task_type": "similarity", "inputs": ox.TASK_INPUTS}
    cfg = triton_config("stsb", sts, {"num_labels": 1}, 8)
    assert "dims: [ 2, -1 ]" in cfg and "reshape: { shape: [  ] }" in cfg


# --- on a tiny trained pipeline (session fixture tiny_export) --------------------------


@pytest.mark.slow
def test_fp32_parity_and_identical_dev_predictions(tiny_export):
    params = tiny_export
    src, out = params.artifacts("finetune", "authors"), params.artifacts("export", "authors")
    model, meta = TaskModel.load(src)
    tok = load_tokenizer(src)
    ds = params.dataset("authors")
    dev = encode(load_split(ds, "dev"), ds.task_type, tok, meta["max_len"], ds.labels)
    ref = predict(model, dev, special_ids(tok)["pad"])
    onnx_model = OnnxTaskModel(out, "fp32", device="auto")
    assert onnx_model.providers == providers_for("auto", cuda_problem())  # the code's decision
    got = np.concatenate(
        [onnx_model.logits([e.seqs for e in dev[i : i + 32]]) for i in range(0, len(dev), 32)]
    )
    assert np.abs(got - ref).max() <= 1e-4
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))

    gold = np.array([e.label for e in dev])
    int8 = OnnxTaskModel(out, "int8", device="cpu")
    q = np.concatenate(
        [int8.logits([e.seqs for e in dev[i : i + 32]]) for i in range(0, len(dev), 32)]
    )
    acc_ref, acc_q = (ref.argmax(-1) == gold).mean(), (q.argmax(-1) == gold).mean()
    assert acc_q >= acc_ref - 0.005, (acc_ref, acc_q)

    info = json.loads((out / "export.json").read_text())
    assert info["variants"] == ["fp32", "fp16", "int8"]
    names = {i.name: i.shape for i in onnx_model.session.get_inputs()}
    assert names["input_ids"] == [ox.BATCH, ox.SEQ]  # dynamic batch and length


@pytest.mark.slow
def test_fp16_variant_runs(tiny_export):
    out = tiny_export.artifacts("export", "authors")
    fp32, fp16 = OnnxTaskModel(out, "fp32", "cpu"), OnnxTaskModel(out, "fp16", "cpu")
    recs = [{"text": "It was a dark and stormy night; the rain fell in torrents."}]
    a = fp32.logits(list(fp32.encode(recs)))
    b = fp16.logits(list(fp16.encode(recs)))
    assert b.dtype == np.float32 and np.abs(a - b).max() < 1e-2


@pytest.mark.slow
@pytest.mark.gpu
def test_fp16_on_cuda(tiny_export):
    out = tiny_export.artifacts("export", "authors")
    fp32, fp16 = OnnxTaskModel(out, "fp32", "cpu"), OnnxTaskModel(out, "fp16", "cuda")
    assert fp16.providers[0] == "CUDAExecutionProvider"
    recs = [{"text": "It was a dark and stormy night; the rain fell in torrents."}] * 4
    a, b = fp32.logits(list(fp32.encode(recs))), fp16.logits(list(fp16.encode(recs)))
    assert np.abs(a - b).max() < 1e-2 and (a.argmax(-1) == b.argmax(-1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_greedy_generation_matches_pytorch(tiny_export, variant):
    from transformers import AutoModelForCausalLM

    src = tiny_export.artifacts("pretrain", "hf")
    lm = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    tok = load_tokenizer(src)
    onnx_lm = OnnxLM(tiny_export.artifacts("export", "lm"), variant, "cpu")
    assert onnx_lm.session.get_providers() == ["CPUExecutionProvider"]
    for prompt in ["It was the best of times", "Alice was beginning to get very tired"]:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        ref = lm.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0, len(ids) :].tolist()
        onnx_lm.eot = -1  # compare all 24 tokens, like eos_token_id=None above
        got = onnx_lm.generate_ids(ids, 24, greedy=True)
        if variant == "fp32":
            assert got == ref
        else:  # int8 is a different model: most tokens agree
            assert sum(a == b for a, b in zip(got, ref, strict=True)) >= 12


@pytest.mark.slow
def test_triton_repository(tiny_export):
    repo = tiny_export.artifacts().parent / "triton"
    assert sorted(p.name for p in repo.iterdir()) == ["authors", "lm"]
    for name in ("authors", "lm"):
        cfg = (repo / name / "config.pbtxt").read_text()
        sess = session(repo / name / "1" / "model.onnx", "cpu")
        for io in [*sess.get_inputs(), *sess.get_outputs()]:
            assert f'name: "{io.name}"' in cfg
            line = next(x for x in cfg.splitlines() if f'name: "{io.name}"' in x)
            dims = line.split("dims: [")[1].split("]")[0].split(",")
            assert len(dims) == len(io.shape) - 1  # batch dim excluded
        assert f'name: "{name}"' in cfg
    assert "dynamic_batching" in (repo / "authors" / "config.pbtxt").read_text()


def _rows(path, n):
    with open(path, encoding="utf-8") as f:
        return list(itertools.islice(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE), n))


@pytest.mark.slow
def test_other_task_types_parity(tiny_export, shared_data, tmp_path):
    """Entailment (RTE), similarity regression (STS-B), multiple choice (ARC, 3-5 choices)."""
    from transformers import AutoModelForCausalLM

    src = tiny_export.artifacts("pretrain", "hf")
    tok = load_tokenizer(src)
    rte = [
        {"premise": r["sentence1"], "hypothesis": r["sentence2"]}
        for r in _rows(shared_data / "glue/RTE/dev.tsv", 6)
    ]
    sts = [
        {"text_a": r["sentence1"], "text_b": r["sentence2"]}
        for r in _rows(shared_data / "glue/STS-B/dev.tsv", 6)
    ]
    arc = []
    with open(shared_data / "arc/ARC-Challenge/ARC-Challenge-Dev.jsonl") as f:
        for line in f:
            q = json.loads(line)["question"]
            arc.append(
                {"context": "", "question": q["stem"], "choices": [c["text"] for c in q["choices"]]}
            )
            if len(arc) == 12:
                break
    arc[0]["choices"] = arc[0]["choices"][:2]  # fewer choices than others: padded out
    cfg = ExportConfig(fp16=False, int8=False)
    for task_type, n, recs in [
        ("entailment", 3, rte),
        ("similarity", 1, sts),
        ("multiple_choice", 1, arc),
    ]:
        torch.manual_seed(0)
        lm = AutoModelForCausalLM.from_pretrained(str(src))
        model = TaskModel(lm, task_type, n)
        d = tmp_path / task_type
        model.save(d, extra={"labels": None, "max_len": 64})
        tok.save_pretrained(str(d))
        onnx_models.export_task(d, tmp_path / "out" / task_type, cfg, recs[:2])  # checks 2 rows
        # every row, computed here on both sides: ONNX Runtime vs PyTorch
        onnx_model = OnnxTaskModel(tmp_path / "out" / task_type, "fp32", "cpu")
        examples = [encode_record(r, task_type, tok, 64) for r in recs]
        with torch.no_grad():
            ref = model.eval()(**collate(examples, task_type, special_ids(tok)["pad"]))[0]
        got = onnx_model.logits(examples)
        assert got.shape == tuple(ref.shape)
        assert missing_choice(got).tolist() == missing_choice(ref.numpy()).tolist()
        real = ~missing_choice(ref.numpy())
        np.testing.assert_allclose(got[real], ref.numpy()[real], atol=1e-4, rtol=0)
        preds = onnx_model.predict(recs, batch_size=4)
        assert len(preds) == len(recs)
        if task_type == "multiple_choice":
            assert preds[0]["logits"][2:] == [None] * (len(preds[0]["logits"]) - 2)
            assert missing_choice(got[0]).tolist() == [False, False] + [True] * (got.shape[1] - 2)
        elif n == 1:  # regression: the score itself
            assert preds[0]["prediction"] == pytest.approx(ref[0].item(), abs=1e-4)
        else:
            assert [p["prediction"] for p in preds] == ref.argmax(-1).tolist()


@pytest.mark.slow
def test_long_prompt_cut_like_pytorch(tiny_export):
    """A prompt longer than the context: both keep its tail and room for max_new_tokens."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from model.generate import fit_prompt, generate

    src = tiny_export.artifacts("pretrain", "hf")
    lm = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    tok = load_tokenizer(src)
    onnx_lm = OnnxLM(tiny_export.artifacts("export", "lm"), "fp32", "cpu")
    prompt = Path("data/corpus/alice.txt").read_text(encoding="utf-8")[:3000]
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    n_ctx = lm.config.n_positions
    assert len(ids) > n_ctx
    assert fit_prompt(ids, n_ctx, 24) == (ids[-(n_ctx - 24) :], 24)
    got = onnx_lm.generate_ids(ids, 24, greedy=True)
    assert len(got) == 24  # (before: n_ctx - 1 prompt tokens left room for one)
    ref = generate(lm, tok, prompt, max_new_tokens=24, greedy=True)
    assert onnx_lm.generate(prompt, 24, greedy=True) == ref
