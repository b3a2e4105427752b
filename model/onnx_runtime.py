"""ONNX Runtime inference for exported models: task logits and LM generation.

An exported model directory holds onnx/model.onnx (fp32), optionally
onnx/model_quantized.onnx (int8) and onnx/model_fp16.onnx (the Hugging Face ONNX names),
the tokenizer, task.json (task models) and export.json.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from model import inputs, schema
from model.generate import fit_prompt
from model.tokenizer import EOT, load_tokenizer, special_ids

log = logging.getLogger(__name__)

VARIANTS = {
    "fp32": "onnx/model.onnx",
    "int8": "onnx/model_quantized.onnx",
    "fp16": "onnx/model_fp16.onnx",
}
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def cuda_problem(available: Sequence[str] | None = None) -> str | None:
    """Why ONNX Runtime's CUDA provider cannot run here, or None if it can.

    available: the providers to judge (default: this onnxruntime build's)."""
    import onnxruntime as ort

    if CUDA not in (ort.get_available_providers() if available is None else available):
        return "this onnxruntime build has no CUDA provider"
    try:
        import ctypes

        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1)"
    try:
        ort.preload_dlls()  # CUDA/cuDNN libraries from the nvidia-* wheels, if installed
    except Exception as e:
        return f"onnxruntime.preload_dlls() failed: {e}"
    return None


def providers_for(device: str, problem: str | None) -> list[str]:
    """The providers to ask for: CUDA first unless device is cpu or CUDA has a problem."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected auto, cpu or cuda")
    return [CUDA, CPU] if device != "cpu" and problem is None else [CPU]


def check_providers(path: str | Path, device: str, got: Sequence[str], problem: str | None):
    """After loading: CUDA asked for (auto, cuda) but not running -> an error for `cuda`,
    a logged fallback to CPU for `auto`."""
    if device == "cpu" or CUDA in got:
        return
    msg = f"CUDA not usable ({problem or 'the provider failed to load'})"
    if device == "cuda":
        raise RuntimeError(f"{path}: {msg}")
    log.warning("%s: running %s on CPUExecutionProvider", msg, Path(path).name)


def session(
    path: str | Path,
    device: str = "auto",
    threads: int | None = None,
    available: Sequence[str] | None = None,
):
    """An InferenceSession on CUDA when asked for or usable, else CPU; providers checked.

    device: auto (CUDA if usable, else CPU, logged), cuda (an error if unusable), cpu.
    available: the providers to consider (default: this onnxruntime build's).
    """
    import onnxruntime as ort

    problem = cuda_problem(available) if device != "cpu" else None
    providers = providers_for(device, problem)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=providers)
    check_providers(path, device, sess.get_providers(), problem)
    return sess


def model_file(model_dir: str | Path, variant: str) -> Path:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    path = Path(model_dir, VARIANTS[variant])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {variant} model in this export")
    return path


class OnnxTaskModel:
    """A fine-tuned task model under ONNX Runtime: records -> logits / predictions."""

    def __init__(
        self,
        model_dir: str | Path,
        variant: str = "fp32",
        device: str = "auto",
        threads: int | None = None,
    ):
        self.dir = Path(model_dir)
        self.meta = json.loads((self.dir / "task.json").read_text())
        self.task_type = self.meta["task_type"]
        self.labels = self.meta.get("labels")
        self.regression = schema.is_regression(self.task_type, self.meta["num_labels"])
        self.tok = load_tokenizer(self.dir)
        self.pad = special_ids(self.tok)["pad"]
        self.session = session(model_file(self.dir, variant), device, threads)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def logits(self, examples: Sequence[list]) -> np.ndarray:
        """Logits for already-transformed examples (one batch)."""
        batch = inputs.collate(examples, self.task_type, self.pad)
        feed = {k: v.numpy() for k, v in batch.items()}
        return self.session.run(["logits"], feed)[0]

    def encode(self, records: Iterable[dict]) -> Iterator[list]:
        for i, r in enumerate(records, start=1):
            yield inputs.encode_record(r, self.task_type, self.tok, self.meta["max_len"], i)

    def batches(self, records: Sequence[dict], batch_size: int = 32) -> Iterator[list[dict]]:
        """{"prediction", "logits"} per record, a list per batch, in order; every record is
        encoded (and checked) before the first batch runs."""
        examples = list(self.encode(records))
        for i in range(0, len(examples), batch_size):
            yield self.format(self.logits(examples[i : i + batch_size]))

    def predict(self, records: Sequence[dict], batch_size: int = 32) -> list[dict]:
        """One {"prediction", "logits"} per record, in order."""
        return [row for batch in self.batches(records, batch_size) for row in batch]

    def format(self, logits: np.ndarray) -> list[dict]:
        rows = []
        for row in logits:
            if self.regression:
                rows.append({"prediction": float(row)})
                continue
            k = int(np.argmax(row))
            pred = self.labels[k] if self.labels else k
            finite = np.where(~np.isfinite(row) | schema.missing_choice(row), None, row)
            rows.append(
                {"prediction": pred, "logits": [None if v is None else float(v) for v in finite]}
            )
        return rows


class OnnxLM:
    """The exported LM: greedy or sampled generation with the exported KV cache."""

    def __init__(
        self,
        model_dir: str | Path,
        variant: str = "fp32",
        device: str = "auto",
        threads: int | None = None,
    ):
        self.dir = Path(model_dir)
        self.geo = json.loads((self.dir / "export.json").read_text())["lm"]
        self.tok = load_tokenizer(self.dir)
        self.eot = self.tok.convert_tokens_to_ids(EOT)
        self.session = session(model_file(self.dir, variant), device, threads)
        self.past_names = [i.name for i in self.session.get_inputs()][2:]

    def step(self, ids: np.ndarray, seq_len: int, past: list[np.ndarray]):
        """One forward pass: next-token logits (B, V) and the new cache."""
        feed = {"input_ids": ids, "attention_mask": np.ones((ids.shape[0], seq_len), np.int64)}
        feed.update(zip(self.past_names, past, strict=True))
        logits, *present = self.session.run(None, feed)
        return logits[:, -1], present

    def generate_ids(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        greedy: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> list[int]:
        rng = np.random.default_rng(seed)
        n_ctx, cache = self.geo["n_ctx"], bool(self.past_names)
        seq, max_new_tokens = fit_prompt(prompt_ids or [self.eot], n_ctx, max_new_tokens)
        shape = (1, self.geo["n_head"], 0, self.geo["head_dim"])
        past = [np.zeros(shape, np.float32) for _ in self.past_names]
        ids, out = np.array([seq], np.int64), []
        for _ in range(max_new_tokens):
            logits, present = self.step(ids, len(seq), past)
            nxt = pick(logits[0].astype(np.float64), greedy, temperature, top_k, top_p, rng)
            if nxt == self.eot:
                break
            out.append(nxt)
            seq.append(nxt)
            if cache:
                past, ids = present, np.array([[nxt]], np.int64)
            else:
                ids = np.array([seq], np.int64)
        return out

    def generate(self, prompt: str, max_new_tokens: int = 64, **kw) -> str:
        ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        return self.tok.decode(
            self.generate_ids(ids, max_new_tokens, **kw), skip_special_tokens=True
        )


def pick(logits: np.ndarray, greedy, temperature, top_k, top_p, rng) -> int:
    """Argmax, or a sample after temperature, top-k and nucleus (top-p) filtering."""
    if greedy:
        return int(np.argmax(logits))
    logits = logits / temperature
    if top_k:
        kth = np.sort(logits)[-min(top_k, logits.size)]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs)
        keep = np.cumsum(probs[order]) - probs[order] < top_p
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))
