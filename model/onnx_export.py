"""ONNX export of fine-tuned task models and of the LM with a KV cache.

torch.onnx.export(dynamo=True) traces thin wrappers with flat tensor signatures:

  task model  input_ids, attention_mask (B, T) or (B, K, T)  ->  logits
  LM          input_ids (B, T), attention_mask (B, P+T), past_key_values.{i}.key/value
              (B, H, P, D)  ->  logits (B, T, V), present.{i}.key/value (B, H, P+T, D)

The LM's names are Hugging Face optimum's (what transformers.js and other stock
decoders feed); positions come from the past length, so there is no position_ids input.
The symbolic dims are named as optimum names them (DIMS): stock clients size the empty
first-step cache from them.

Then graph work: Gemm -> MatMul + Add, an fp16 copy for CUDA (with ONNX Runtime's
transformer fusions) and an int8 dynamically quantized copy for CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from model.schema import ONE_SEQUENCE
from model.task_model import TaskModel

log = logging.getLogger(__name__)

TASK_INPUTS, TASK_OUTPUTS = ["input_ids", "attention_mask"], ["logits"]
# The symbolic dims, named as optimum's ONNX exporter names them (optimum-onnx:
# optimum/exporters/onnx/config.py, base.py). transformers.js builds the empty cache
# from a session's input metadata: BATCH becomes the batch size, any other name 0.
BATCH, SEQ, PAST, CHOICES = "batch_size", "sequence_length", "past_sequence_length", "num_choices"
TOTAL = f"{PAST} + {SEQ}"  # the LM's attention_mask and present.* length
DIMS = (BATCH, SEQ, PAST, TOTAL, CHOICES)


class TaskLogits(nn.Module):
    """TaskModel.forward without labels: (input_ids, attention_mask) -> logits."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)[0]


class LMWithPast(nn.Module):
    """A GPT-2 LM step over flat past tensors: returns logits and the grown cache."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, *past):
        from transformers import DynamicCache

        pairs = [(past[i], past[i + 1]) for i in range(0, len(past), 2)]
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            past_key_values=DynamicCache(ddp_cache_data=pairs),
            use_cache=True,
        )
        present = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        return (out.logits, *present)


class LMNoCache(nn.Module):
    """For the post-LN OpenAIGPT, which has no KV cache: full-sequence logits."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask):
        return self.lm(input_ids=input_ids, attention_mask=attention_mask).logits


def has_kv_cache(lm: nn.Module) -> bool:
    return lm.config.model_type == "gpt2"


def lm_geometry(lm: nn.Module) -> dict:
    """What a runtime needs to build the past inputs."""
    c = lm.config
    return {
        "n_layer": c.n_layer if has_kv_cache(lm) else 0,
        "n_head": c.n_head,
        "head_dim": c.n_embd // c.n_head,
        "n_ctx": c.n_positions,
        "vocab_size": c.vocab_size,
    }


def past_names(n_layer: int, prefix: str = "past_key_values") -> list[str]:
    return [f"{prefix}.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]


def _save(program, path: Path, outputs: dict[str, dict[int, str]], rewrite=lambda m: m) -> None:
    """Save with the outputs' dims named as in `outputs` (the exporter writes expressions
    such as ((batch_size*sequence_length)//sequence_length)), after `rewrite`; check."""
    program.save(str(path), external_data=False)
    model = rewrite(onnx.load(str(path)))
    for out in model.graph.output:
        for i, name in outputs.get(out.name, {}).items():
            out.type.tensor_type.shape.dim[i].dim_param = name
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def export_task_model(model: TaskModel, path: str | Path, opset: int = 18) -> None:
    """(B, T) or (B, K, T) ids and mask -> task logits; batch, choices and length dynamic."""
    model = model.eval()
    out = {0: BATCH}
    if model.task_type in ONE_SEQUENCE:
        shape, dims = (3, 16), {0: BATCH, 1: SEQ}
    elif model.task_type == "similarity":
        shape, dims = (3, 2, 16), {0: BATCH, 2: SEQ}  # always both orderings
    else:
        shape, dims, out = (3, 4, 16), {0: BATCH, 1: CHOICES, 2: SEQ}, {0: BATCH, 1: CHOICES}
    ids = torch.randint(0, model.lm.config.vocab_size, shape)
    mask = torch.ones_like(ids)
    mask[..., -3:] = 0  # right padding in the trace
    program = torch.onnx.export(
        TaskLogits(model).eval(),
        (ids, mask),
        dynamo=True,
        opset_version=opset,
        input_names=TASK_INPUTS,
        output_names=TASK_OUTPUTS,
        dynamic_shapes={"input_ids": dims, "attention_mask": dims},
        verbose=False,
    )
    _save(program, Path(path), {"logits": out})


def export_lm(lm: nn.Module, path: str | Path, opset: int = 18) -> dict:
    """The LM for generation (with a KV cache for GPT-2); returns lm_geometry()."""
    lm = lm.eval()
    geo = lm_geometry(lm)
    b, t, p = 2, 5, 3
    ids = torch.randint(0, geo["vocab_size"], (b, t))
    mask = torch.ones(b, p + t if geo["n_layer"] else t, dtype=torch.long)
    names = past_names(geo["n_layer"])
    past = [torch.randn(b, geo["n_head"], p, geo["head_dim"]) for _ in names]
    mask_len = TOTAL if geo["n_layer"] else SEQ
    shapes = {"input_ids": {0: BATCH, 1: SEQ}, "attention_mask": {0: BATCH, 1: mask_len}}
    if geo["n_layer"]:
        shapes["past"] = tuple({0: BATCH, 2: PAST} for _ in names)
        module = LMWithPast(lm).eval()
    else:
        module = LMNoCache(lm).eval()
    program = torch.onnx.export(
        module,
        (ids, mask, *past),
        dynamo=True,
        opset_version=opset,
        input_names=["input_ids", "attention_mask", *names],
        output_names=["logits", *past_names(geo["n_layer"], "present")],
        dynamic_shapes=shapes,
        verbose=False,
    )
    outputs = {"logits": {0: BATCH, 1: SEQ}}
    outputs.update({n: {0: BATCH, 2: TOTAL} for n in past_names(geo["n_layer"], "present")})
    _save(program, Path(path), outputs, batch_from_input_ids)
    return geo


def batch_from_input_ids(model: onnx.ModelProto) -> onnx.ModelProto:
    """Take the batch size from input_ids where the exporter took it from a past input.

    The exporter reads a shared dim from any input that has it. A client that cannot
    resolve the cache's batch dim sends an empty cache of batch 0, which has no batch to
    give; it is empty all the same, so reading the batch from input_ids serves it too.
    """
    for n in model.graph.node:
        dim0 = sorted((x.name, x.i) for x in n.attribute) == [("end", 1), ("start", 0)]
        if n.op_type == "Shape" and dim0 and n.input[0].startswith("past_key_values."):
            n.input[0] = "input_ids"
    return model


def client_past(inputs, batch: int) -> dict[str, np.ndarray]:
    """The empty first-step cache as a stock client builds it from a session's input
    metadata (transformers.js's resolveCacheShape): BATCH -> batch, other symbolic -> 0."""
    return {
        i.name: np.zeros(
            [batch if d == BATCH else d if isinstance(d, int) else 0 for d in i.shape],
            np.float32,
        )
        for i in inputs
        if i.name.startswith("past_key_values.")
    }


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite Gemm (GPT-2's Conv1D as addmm) into MatMul + Add.

    The graph fusions and the quantizer both work on MatMul; the transposed-B
    weight of a Gemm is stored pre-transposed.
    """
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes = []
    for n in g.node:
        if n.op_type != "Gemm":
            nodes.append(n)
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            nodes.append(n)
            continue
        w = n.input[1]
        if a.get("transB", 0):
            if w not in inits:
                nodes.append(n)
                continue
            g.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(inits[w]).T, w + "_t")
            )
            w += "_t"
        if len(n.input) > 2 and n.input[2]:
            mm = n.output[0] + "_matmul"
            nodes.append(helper.make_node("MatMul", [n.input[0], w], [mm], name=n.name + "_matmul"))
            nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], name=n.name))
        else:
            nodes.append(helper.make_node("MatMul", [n.input[0], w], [n.output[0]], name=n.name))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return model


def optimize(src: str | Path, dst: str | Path, n_head: int, hidden: int) -> dict:
    """ONNX Runtime's transformer fusions (model_type gpt2) of a graph without Gemm
    (see gemm_to_matmul); returns the fused-op counts."""
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(
        str(src), model_type="gpt2", num_heads=n_head, hidden_size=hidden, opt_level=0
    )
    opt.save_model_to_file(str(dst))
    onnx.checker.check_model(str(dst))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def to_fp16(src: str | Path, dst: str | Path) -> None:
    """fp16 weights and compute for the CUDA provider; inputs/outputs stay fp32/int64."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.topological_sort()
    model.save_model_to_file(str(dst))
    onnx.checker.check_model(str(dst))


def to_int8(
    src: str | Path,
    dst: str | Path,
    op_types: list[str],
    per_channel: bool,
    reduce_range: bool,
    exclude: list[str] | None = None,
) -> None:
    """Dynamic int8 quantization (weights int8 offline, activations quantized per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=op_types,
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude or [],
    )
    onnx.checker.check_model(str(dst))
