"""A Triton Inference Server model repository from an ONNX export (`genpt export --triton`).

NAME/config.pbtxt and NAME/1/model.onnx per exported model (task models and the LM).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from genpt.io import atomic_dir


def _tensor(name: str, dims: list[int], dtype: str, reshape: list[int] | None = None) -> str:
    extra = (
        f" reshape: {{ shape: [ {', '.join(map(str, reshape))} ] }}" if reshape is not None else ""
    )
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ]{extra} }}'


def triton_config(name: str, export_info: dict, task: dict | None, max_batch: int) -> str:
    """config.pbtxt for one exported model (dims exclude the batch dimension)."""
    from model.schema import is_regression

    if export_info["kind"] == "task":
        tt = export_info["task_type"]
        in_dims = {"similarity": [2, -1], "multiple_choice": [-1, -1]}.get(tt, [-1])
        ins = [_tensor(n, in_dims, "TYPE_INT64") for n in export_info["inputs"]]
        regression = is_regression(tt, task["num_labels"])
        if tt == "multiple_choice":
            out = _tensor("logits", [-1], "TYPE_FP32")
        elif regression:
            out = _tensor("logits", [1], "TYPE_FP32", reshape=[])
        else:
            out = _tensor("logits", [task["num_labels"]], "TYPE_FP32")
        outs, batching = [out], "dynamic_batching { max_queue_delay_microseconds: 100 }\n"
    else:
        geo = export_info["lm"]
        past = [geo["n_head"], -1, geo["head_dim"]]
        ins = [
            _tensor("input_ids", [-1], "TYPE_INT64"),
            _tensor("attention_mask", [-1], "TYPE_INT64"),
        ]
        ins += [_tensor(n, past, "TYPE_FP32") for n in export_info["inputs"][2:]]
        outs = [_tensor("logits", [-1, geo["vocab_size"]], "TYPE_FP32")]
        outs += [_tensor(n, past, "TYPE_FP32") for n in export_info["outputs"][1:]]
        batching = ""  # the client owns the KV cache: no server-side batching of steps
    sep = ",\n"
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
        f"input [\n{sep.join(ins)}\n]\noutput [\n{sep.join(outs)}\n]\n{batching}"
        "instance_group [ { kind: KIND_AUTO } ]\n"
    )


def write_triton(export_dir: Path, out: Path, max_batch: int, variant: str = "fp32") -> None:
    """A Triton model repository: NAME/config.pbtxt and NAME/1/model.onnx per exported model."""
    from model.onnx_runtime import VARIANTS

    with atomic_dir(out) as d:
        for sub in sorted(p for p in export_dir.iterdir() if (p / "export.json").exists()):
            info = json.loads((sub / "export.json").read_text())
            task = json.loads((sub / "task.json").read_text()) if info["kind"] == "task" else None
            (d / sub.name / "1").mkdir(parents=True)
            shutil.copy2(sub / VARIANTS[variant], d / sub.name / "1" / "model.onnx")
            cfg = triton_config(sub.name, info, task, max_batch)
            (d / sub.name / "config.pbtxt").write_text(cfg)
