#!/usr/bin/env python3
"""Classify or score JSONL rows with a genpt task model: onnxruntime, tokenizers, numpy only.

Everything about the inputs comes from two files of the model's directory, not from genpt:
task.json (`inputs`: fields, truncation rule, padding, how similarity and multiple choice
form their sequences; `output`: what the logits mean; `labels`) and tokenizer.json (the
tokenizer, and its TemplateProcessing post-processor: where start, delim and extract go).

    python onnx_client.py MODEL_DIR rows.jsonl [-o out.jsonl] [--variant fp32|int8|fp16]

MODEL_DIR is one model of a published bundle, e.g. DEST/onnx/authors after
`genpt fetch DEST` (or artifacts/export/authors). Each output line is the input row plus
`prediction` and, for classes and choices, `logits`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

FILES = {
    "fp32": "onnx/model.onnx",
    "int8": "onnx/model_quantized.onnx",
    "fp16": "onnx/model_fp16.onnx",
}


def fit_lengths(lengths: list[int], budget: int) -> list[int]:
    """task.json inputs.truncation.rule, in its step-by-step form: how many leading tokens
    each part keeps (drop one token at a time from the longest part, the later on ties)."""
    n = list(lengths)
    while sum(n) > budget:
        i = max(range(len(n)), key=lambda j: (n[j], j))
        n[i] -= 1
    return n


class TaskClient:
    def __init__(self, model_dir: str | Path, variant: str = "fp32", device: str = "cpu"):
        d = Path(model_dir)
        self.task = json.loads((d / "task.json").read_text())
        self.spec = self.task["inputs"]
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        post = json.loads((d / "tokenizer.json").read_text())["post_processor"]
        if post["type"] != "TemplateProcessing":
            sys.exit(f"{d / 'tokenizer.json'}: expected a TemplateProcessing post-processor")
        self.template = post
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(d / FILES[variant]), providers=providers)
        got = self.session.get_providers()
        if got[0] != providers[0]:
            sys.exit(f"{d}: {providers[0]} not available (session has {got})")
        print(f"providers: {got}", file=sys.stderr)

    def ids(self, text: str | None) -> list[int]:
        return self.tok.encode(text or "", add_special_tokens=False).ids

    def apply(self, a: list[int], b: list[int] | None = None) -> list[int]:
        """tokenizer.json's template `single` (a) or `pair` (a, b)."""
        out: list[int] = []
        for piece in self.template["single" if b is None else "pair"]:
            if "Sequence" in piece:
                out += a if piece["Sequence"]["id"] == "A" else b
            else:
                out += self.template["special_tokens"][piece["SpecialToken"]["id"]]["ids"]
        return out

    def sequences(self, row: dict) -> list[list[int]]:
        """One row -> its token sequences, as task.json `inputs.sequence` says."""
        budget, kind = self.spec["truncation"]["budget"], self.task["task_type"]

        def cut(parts: list[list[int]]) -> list[list[int]]:
            n = fit_lengths([len(p) for p in parts], budget)
            return [p[:k] for p, k in zip(parts, n, strict=True)]

        if kind == "multiple_choice":
            c, q = self.ids(row.get("context")), self.ids(row.get("question"))
            seqs = []
            for choice in row["choices"]:
                c2, q2, a = cut([c, q, self.ids(choice)])
                seqs.append(self.apply(c2 + q2, a))
            return seqs
        parts = cut([self.ids(row.get(f)) for f in self.spec["fields"]])
        if kind == "similarity":
            return [self.apply(*parts), self.apply(parts[1], parts[0])]
        return [self.apply(*parts)]

    def batch(self, rows: list[dict]) -> dict[str, np.ndarray]:
        """Right padding (inputs.padding); missing choices are all-pad, mask 0."""
        seqs = [self.sequences(r) for r in rows]
        k, t = max(map(len, seqs)), max(len(s) for ss in seqs for s in ss)
        ids = np.full((len(rows), k, t), self.spec["padding"]["pad_id"], np.int64)
        mask = np.zeros((len(rows), k, t), np.int64)
        for i, ss in enumerate(seqs):
            for j, s in enumerate(ss):
                ids[i, j, : len(s)], mask[i, j, : len(s)] = s, 1
        if self.task["task_type"] in ("classification", "entailment"):
            ids, mask = ids[:, 0], mask[:, 0]
        return {"input_ids": ids, "attention_mask": mask}

    def predict(self, rows: list[dict], batch_size: int = 32) -> list[dict]:
        kind, labels = self.task["task_type"], self.task.get("labels")
        regression = self.task["num_labels"] == 1 and kind != "multiple_choice"
        out = []
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            logits = self.session.run(["logits"], self.batch(chunk))[0]
            for row, z in zip(chunk, logits, strict=True):
                if regression:
                    out.append({**row, "prediction": float(z)})
                    continue
                if kind == "multiple_choice":
                    z = z[: len(row["choices"])]  # the rest are missing choices
                k = int(np.argmax(z))
                pred = labels[k] if labels else k
                out.append({**row, "prediction": pred, "logits": [float(v) for v in z]})
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("rows", help="JSONL, one record per line (the fields task.json names)")
    ap.add_argument("-o", "--output", default="-", help="JSONL out (default: stdout)")
    ap.add_argument("--variant", choices=sorted(FILES), default="fp32")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    with open(args.rows, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    client = TaskClient(args.model_dir, args.variant, args.device)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in client.predict(rows))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
