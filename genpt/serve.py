"""`genpt predict` and `genpt generate --bundle`: ONNX Runtime on a verified bundle.

The bundle is opened through genpt.bundle (a local export or registry version, or
s3://.../NAME/VERSION|latest), so every file is checked before anything is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from genpt.bundle import BundleError, model_dir, open_bundle
from genpt.io import json_lines


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a bad line fails with file and line number."""
    with open(path, encoding="utf-8") as f:
        try:
            return [row for _, row in json_lines(f)]
        except ValueError as e:
            raise BundleError(f"{path}: {e}") from None


def predict_jsonl(model, records: list[dict], batch_size: int = 32) -> Iterator[dict]:
    """Each input record with `prediction` (and `logits`) added, in order, with progress."""
    from tqdm.auto import tqdm

    rows = iter(records)
    with tqdm(total=len(records), desc="predict", unit="row", mininterval=1.0) as bar:
        for outs in model.batches(records, batch_size):  # every row checked first
            for out in outs:
                yield {**next(rows), **out}
            bar.update(len(outs))


def predict(
    src: str,
    input_path: str,
    output_path: str,
    name: str | None = None,
    variant: str = "fp32",
    device: str = "auto",
    batch_size: int = 32,
) -> dict:
    from genpt.io import atomic_write_text
    from model.onnx_runtime import OnnxTaskModel

    records = read_jsonl(input_path)  # bad input fails before loading anything
    model = OnnxTaskModel(model_dir(open_bundle(src), name), variant, device)
    try:
        rows = list(predict_jsonl(model, records, batch_size))
    except ValueError as e:  # a record missing a field its task type needs
        raise BundleError(f"{input_path}: {e}") from None
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(output_path, "".join(line + "\n" for line in lines))
    return {"rows": len(lines), "output": output_path, "providers": model.providers}


def generate(src: str, prompt: str, variant: str = "fp32", device: str = "auto", **kw) -> str:
    from model.onnx_runtime import OnnxLM

    lm = OnnxLM(model_dir(open_bundle(src), "lm"), variant, device)
    return lm.generate(prompt, **kw)
