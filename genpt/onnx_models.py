"""ONNX models of the fine-tuned task models and of the LM (stage `export` writes them).

The stage writes artifacts/export/ (a bundle, ready for `genpt publish`; layout: genpt/bundle):
  NAME/  onnx/model.onnx (fp32), onnx/model_quantized.onnx (int8), onnx/model_fp16.onnx,
         tokenizer.json with the task's input template, task.json (how to build inputs),
         export.json
  lm/    the pre-trained LM with KV cache in the Hugging Face ONNX layout: config.json,
         generation_config.json, tokenizer files, the same onnx/ files, export.json
  manifest.json  sha256 of every file
Each fp32 model is checked against PyTorch on real inputs before anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from genpt.errors import GenptError
from genpt.io import write_json
from genpt.params import ExportConfig, Params

log = logging.getLogger(__name__)
# torch / onnx / model.* are imported inside the functions: `genpt` starts without them.
FORMAT = "genpt-onnx/2"  # 2: Hugging Face file and I/O names


class ExportError(GenptError, RuntimeError):
    """An exported model failed a check (parity with PyTorch, ONNX checker)."""


def _finish_graph(raw: Path, out: Path, cfg: ExportConfig, n_head: int, hidden: int) -> dict:
    """raw export -> onnx/model.onnx, onnx/model_fp16.onnx, onnx/model_quantized.onnx.

    Returns notes for export.json.
    The CPU graphs (fp32, int8) stay unfused: an ORT_ENABLE_ALL session fuses them at
    load, and the offline gpt2 fusions made them slower here (docs/onnx.md). The fp16
    graph, for CUDA, gets the offline fusions when export.optimize is set.
    """
    import onnx

    from model import onnx_export as ox
    from model.onnx_runtime import VARIANTS

    notes: dict = {"variants": ["fp32"]}
    fp32 = out / VARIANTS["fp32"]
    fp32.parent.mkdir()
    onnx.save(ox.gemm_to_matmul(onnx.load(str(raw))), str(fp32))
    onnx.checker.check_model(str(fp32), full_check=True)
    raw.unlink()
    if cfg.fp16:
        fused = out / "fused.onnx"
        if cfg.optimize:
            notes["fp16_fused_ops"] = ox.optimize(fp32, fused, n_head, hidden)
        ox.to_fp16(fused if cfg.optimize else fp32, out / VARIANTS["fp16"])
        fused.unlink(missing_ok=True)
        notes["variants"].append("fp16")
    if cfg.int8:
        matmuls = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul"]
        # The last MatMul is the output head (task head or tied LM head): small, and the
        # most sensitive to quantization error.
        exclude = matmuls[-1:] if cfg.int8_exclude_head else []
        ox.to_int8(
            fp32,
            out / VARIANTS["int8"],
            cfg.int8_op_types,
            cfg.int8_per_channel,
            cfg.int8_reduce_range,
            exclude,
        )
        notes["variants"].append("int8")
    return notes


def sample_records(params: Params, name: str, n: int = 16) -> list[dict]:
    """A few real dev rows of dataset `name` for the parity check."""
    from genpt.ingest.loaders import load_split

    return load_split(params.dataset(name), "dev")[:n]


def export_task(src: Path, out: Path, cfg: ExportConfig, records: list[dict]) -> dict:
    """One fine-tuned model dir (tasks/finetune.py's output) -> an export dir."""
    import torch

    from model import onnx_export as ox
    from model.inputs import collate, encode_record
    from model.onnx_runtime import OnnxTaskModel
    from model.task_model import TaskModel
    from model.tokenizer import load_tokenizer, special_ids

    model, meta = TaskModel.load(src)
    tok = load_tokenizer(src)
    out.mkdir(parents=True)
    raw = out / "raw.onnx"
    ox.export_task_model(model, raw, cfg.opset)
    cfgm = model.lm.config
    notes = _finish_graph(raw, out, cfg, cfgm.n_head, cfgm.n_embd)
    save_task_tokenizer(tok, out)
    write_json(out / "task.json", task_spec(meta, tok))

    # Parity on real inputs: fp32 logits within atol of PyTorch; int8 agreement noted.
    examples = [encode_record(r, meta["task_type"], tok, meta["max_len"]) for r in records]
    batch = collate(examples, meta["task_type"], special_ids(tok)["pad"])
    with torch.no_grad():
        ref = model(batch["input_ids"], batch["attention_mask"])[0].numpy()
    parity = {}
    for variant in notes["variants"]:
        if variant == "fp16":
            continue  # fp16 targets CUDA; checked where a GPU is available
        got = OnnxTaskModel(out, variant, device="cpu").logits(examples)
        parity[variant] = _compare(ref, got, meta)
    if parity["fp32"]["max_abs"] > cfg.parity_atol:
        raise ExportError(
            f"{src}: fp32 ONNX logits differ from PyTorch by {parity['fp32']['max_abs']:.2e} "
            f"> export.parity_atol {cfg.parity_atol}"
        )
    info = {
        "format": FORMAT,
        "kind": "task",
        "task_type": meta["task_type"],
        "inputs": ox.TASK_INPUTS,
        "outputs": ox.TASK_OUTPUTS,
        "opset": cfg.opset,
        "parity": parity,
        **notes,
    }
    write_json(out / "export.json", info)
    return info


def save_task_tokenizer(tok, out: Path) -> None:
    """tokenizer.json with the paper's input template as its post-processor.

    tokenizer(text) then gives start text extract, tokenizer(a, b) start a delim b extract;
    genpt itself encodes with add_special_tokens=False and adds them in model/inputs.py.
    """
    from tokenizers import Tokenizer, processors

    from model.inputs import template
    from model.tokenizer import DELIM, EXTRACT, START

    tok.save_pretrained(str(out))
    t = Tokenizer.from_file(str(out / "tokenizer.json"))
    tm = template(START, DELIM, EXTRACT)
    specials = [(x, tok.convert_tokens_to_ids(x)) for x in (START, DELIM, EXTRACT)]
    t.post_processor = processors.TemplateProcessing(
        single=tm["single"], pair=tm["pair"], special_tokens=specials
    )
    t.save(str(out / "tokenizer.json"))


def task_spec(meta: dict, tok) -> dict:
    """task.json: the fine-tuned model's metadata plus how to build its inputs and read logits."""
    from model.inputs import describe, describe_output
    from model.tokenizer import DELIM, EXTRACT, PAD, START, special_ids

    tokens = {"start": START, "delim": DELIM, "extract": EXTRACT, "pad": PAD}
    ids = {k: v for k, v in special_ids(tok).items() if k in tokens}
    return {
        **meta,
        "inputs": describe(meta["task_type"], meta["max_len"], tokens, ids),
        "output": describe_output(meta["task_type"], meta["num_labels"]),
    }


def _compare(ref: np.ndarray, got: np.ndarray, meta: dict) -> dict:
    from model.schema import missing_choice

    res = {"max_abs": float(np.abs(np.where(missing_choice(ref), 0.0, ref - got)).max())}
    if ref.ndim == 2:
        res["same_argmax"] = float((ref.argmax(-1) == got.argmax(-1)).mean())
    return res


def export_lm_dir(src: Path, out: Path, cfg: ExportConfig, prompt: str) -> dict:
    """The pre-trained LM (HF dir) -> lm/ with the KV-cache decoder."""
    import torch
    from transformers import AutoModelForCausalLM

    from model import onnx_export as ox
    from model.onnx_runtime import VARIANTS, session
    from model.tokenizer import load_tokenizer

    lm = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    tok = load_tokenizer(src)
    out.mkdir(parents=True)
    raw = out / "raw.onnx"
    geo = ox.export_lm(lm, raw, cfg.opset)
    notes = _finish_graph(raw, out, cfg, geo["n_head"], geo["head_dim"] * geo["n_head"])
    save_hf_files(lm, tok, out)

    ids = tok(prompt, add_special_tokens=False)["input_ids"][: geo["n_ctx"] // 2] or [0]
    with torch.no_grad():
        ref = lm(torch.tensor([ids])).logits[0].numpy()
    sess = session(out / VARIANTS["fp32"], device="cpu")
    feed = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)}
    shape = (1, geo["n_head"], 0, geo["head_dim"])
    pasts = {  # the empty first-step cache as genpt (OnnxLM) and as stock clients build it
        "genpt": {n: np.zeros(shape, np.float32) for n in ox.past_names(geo["n_layer"])},
        "a stock client": ox.client_past(sess.get_inputs(), batch=1),
    }
    max_abs = 0.0
    for who, past in pasts.items():
        what = f"the empty cache {who} builds {sorted({v.shape for v in past.values()})}"
        try:
            logits = sess.run(["logits"], {**feed, **past})[0][0]
        except Exception as e:  # onnxruntime raises its own error classes
            raise ExportError(f"{src}: the fp32 ONNX LM fails on {what}: {e}") from e
        diff = float(np.abs(logits - ref).max())
        if diff > cfg.parity_atol:
            raise ExportError(
                f"{src}: fp32 ONNX LM logits differ from PyTorch by {diff:.2e} on {what}"
            )
        max_abs = max(max_abs, diff)
    info = {
        "format": FORMAT,
        "kind": "lm",
        "lm": geo,
        "inputs": ["input_ids", "attention_mask", *ox.past_names(geo["n_layer"])],
        "outputs": ["logits", *ox.past_names(geo["n_layer"], "present")],
        "opset": cfg.opset,
        "parity": {"fp32": {"max_abs": max_abs}},
        **notes,
    }
    write_json(out / "export.json", info)
    return info


def save_hf_files(lm, tok, out: Path) -> None:
    """config.json, generation_config.json and the tokenizer: what stock loaders read."""
    from transformers import GenerationConfig

    from model.tokenizer import special_ids

    sp = special_ids(tok)
    cfg = lm.config
    cfg.bos_token_id = cfg.eos_token_id = sp["eot"]
    cfg.pad_token_id, cfg.use_cache = sp["pad"], True
    cfg.save_pretrained(str(out))
    GenerationConfig(
        bos_token_id=sp["eot"], eos_token_id=sp["eot"], pad_token_id=sp["pad"]
    ).save_pretrained(str(out))
    tok.save_pretrained(str(out))
