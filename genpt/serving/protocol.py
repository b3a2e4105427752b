"""Open Inference Protocol v2 for the task models: BYTES input tensors named after the
record fields -> encoded rows, and logits -> output tensors.

A request's tensors are the fields of its rows: `text` (classification); `premise`,
`hypothesis` (entailment); `text_a`, `text_b` (similarity); `choices` [rows, k] with
optional `context`, `question` (multiple choice; "" pads a row with fewer choices). Every
check fails with a RequestError whose message names the tensor and the rule (a 400).
"""

from __future__ import annotations

import math

import numpy as np

from model import inputs, schema

UNBOUNDED = 1 << 30  # max_len for encoding without truncation (then compared with the real one)


class RequestError(ValueError):
    """A bad request: the message names the field and the rule."""


def fields(task_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) input tensor names of a task type."""
    if task_type == "multiple_choice":
        return ("choices",), schema.TEXT_FIELDS[task_type]
    return schema.TEXT_FIELDS[task_type], ()


def input_types(task_type: str) -> list[dict]:
    """Model metadata: the input tensors (-1: any size)."""
    req, opt = fields(task_type)
    shape = {"choices": [-1, -1]}
    return [{"name": n, "datatype": "BYTES", "shape": shape.get(n, [-1])} for n in req + opt]


def output_types(task_type: str, regression: bool, n_labels: int) -> list[dict]:
    if regression:
        return [
            {"name": "prediction", "datatype": "FP32", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ]
    pred = "INT64" if task_type == "multiple_choice" else "BYTES"
    out = [
        {"name": "prediction", "datatype": pred, "shape": [-1]},
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1 if pred == "INT64" else n_labels]},
    ]
    if pred == "BYTES":
        out.append({"name": "labels", "datatype": "BYTES", "shape": [n_labels]})
    return out


def _text(v, name: str) -> str:
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
    if not isinstance(v, str):
        kind = type(v).__name__
        raise RequestError(f"input {name!r}: BYTES elements must be strings, got {kind}")
    return v


def _flat(data) -> list:
    out = []
    for v in data if isinstance(data, list | tuple) else [data]:
        out.extend(_flat(v) if isinstance(v, list | tuple) else [v])
    return out


def tensor_rows(inp, task_type: str, max_rows: int) -> list:
    """One input tensor -> a list with one value per row (multiple choice: a list of choices)."""
    name, shape = inp.name, list(inp.shape or [])
    if inp.datatype != "BYTES":
        raise RequestError(f"input {name!r}: datatype must be BYTES (text), got {inp.datatype}")
    want = 2 if name == "choices" else 1
    if not (len(shape) == want or (want == 1 and len(shape) == 2 and shape[1] == 1)):
        rule = "[rows, choices]" if want == 2 else "[rows] (or [rows, 1])"
        raise RequestError(f"input {name!r}: shape must be {rule}, got {shape}")
    if any(not isinstance(d, int) or d < 1 for d in shape):
        raise RequestError(f"input {name!r}: every dimension must be a positive integer: {shape}")
    if shape[0] > max_rows:
        raise RequestError(f"input {name!r}: {shape[0]} rows; at most {max_rows} per request")
    data = _flat(inp.data)
    if len(data) != math.prod(shape):
        raise RequestError(
            f"input {name!r}: shape {shape} needs {math.prod(shape)} elements, got {len(data)}"
        )
    texts = [_text(v, name) for v in data]
    if want == 1:
        return texts
    k = shape[1]
    return [[c for c in texts[i * k : (i + 1) * k] if c] for i in range(shape[0])]


def records(request, task_type: str, max_rows: int) -> list[dict]:
    """The rows of an InferRequest as genpt records (the JSONL fields of `genpt predict`)."""
    req, opt = fields(task_type)
    by_name = {}
    for inp in request.inputs:
        if inp.name not in req + opt:
            raise RequestError(
                f"input {inp.name!r}: not an input of this {task_type} model "
                f"(inputs: {', '.join(req + opt)})"
            )
        if inp.name in by_name:
            raise RequestError(f"input {inp.name!r}: given twice")
        by_name[inp.name] = tensor_rows(inp, task_type, max_rows)
    missing = [n for n in req if n not in by_name]
    if missing:
        raise RequestError(f"input {missing[0]!r}: required for a {task_type} model")
    counts = {n: len(v) for n, v in by_name.items()}
    if len(set(counts.values())) > 1:
        raise RequestError(f"inputs: every tensor needs the same number of rows, got {counts}")
    n = next(iter(counts.values()))
    return [{k: v[i] for k, v in by_name.items()} for i in range(n)]


class Tokens:
    """A bundle tokenizer for model.inputs.encode_record, without transformers' Python per
    call (a tenth of the server's time per request): the same Rust tokenizer's `encode`,
    so the same ids, and the special tokens' ids looked up once."""

    def __init__(self, tok):
        self.tok, self.backend, self.ids = tok, tok.backend_tokenizer, {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": self.backend.encode(text, add_special_tokens=add_special_tokens).ids}

    def convert_tokens_to_ids(self, token: str) -> int:
        if token not in self.ids:
            self.ids[token] = self.tok.convert_tokens_to_ids(token)
        return self.ids[token]


def _check(cond: bool, where: str, rule: str) -> None:
    if not cond:
        raise RequestError(f"{where}: {rule}")


def infer_request(body: bytes, model_name: str):
    """A JSON OIP v2 request body -> KServe's InferRequest, checked field by field (what
    KServe's REST route does through its pydantic models, at a fraction of the cost)."""
    import orjson
    from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(f"body: not JSON ({e})") from None
    _check(isinstance(doc, dict), "body", "must be a JSON object")
    rid, params, outs = doc.get("id"), doc.get("parameters"), doc.get("outputs")
    _check(rid is None or isinstance(rid, str), "body.id", "must be a string")
    _check(params is None or isinstance(params, dict), "body.parameters", "must be an object")
    _check(outs is None or isinstance(outs, list), "body.outputs", "must be a list")
    tensors = doc.get("inputs")
    _check(isinstance(tensors, list), "body.inputs", "required: a list of input tensors")
    ins = []
    for i, t in enumerate(tensors):
        where = f"body.inputs.{i}"
        _check(isinstance(t, dict), where, "must be an object")
        name, dtype, shape = t.get("name"), t.get("datatype"), t.get("shape")
        _check(isinstance(name, str), f"{where}.name", "required: a string")
        _check(isinstance(dtype, str), f"{where}.datatype", "required: a string")
        _check(isinstance(shape, list) and all(type(d) is int for d in shape),
               f"{where}.shape", "required: a list of integers")  # fmt: skip
        _check("data" in t, f"{where}.data", "required")
        p = t.get("parameters")
        _check(p is None or isinstance(p, dict), f"{where}.parameters", "must be an object")
        ins.append(InferInput(name=name, shape=shape, datatype=dtype, data=t["data"],
                              parameters=p or {}))  # fmt: skip
    wanted = None
    if outs:
        wanted = []
        for i, o in enumerate(outs):
            ok = isinstance(o, dict) and isinstance(o.get("name"), str)
            _check(ok, f"body.outputs.{i}", "must be an object with a name")
            _check(o.get("parameters") is None or isinstance(o["parameters"], dict),
                   f"body.outputs.{i}.parameters", "must be an object")  # fmt: skip
            wanted.append(RequestedOutput(name=o["name"], parameters=o.get("parameters") or {}))
    return InferRequest(model_name=model_name, infer_inputs=ins, request_id=rid,
                        parameters=params, request_outputs=wanted)  # fmt: skip


def encode(model, rows: list[dict], too_long: str, tok=None) -> list:
    """Rows -> transformed examples; a field that is empty, or too long under `refuse`, fails.
    `tok`: the tokenizer to use (default model.tok; the server passes a Tokens)."""
    max_len, out, tok = model.meta["max_len"], [], tok or model.tok
    for i, r in enumerate(rows):
        for k, v in r.items():
            if k != "choices" and k in fields(model.task_type)[0] and not v:
                raise RequestError(f"input {k!r}: row {i} is empty")
        if model.task_type == "multiple_choice" and len(r["choices"]) < 1:
            raise RequestError(f"input 'choices': row {i} has no non-empty choice")
        try:
            ex = inputs.encode_record(
                r, model.task_type, tok, UNBOUNDED if too_long == "refuse" else max_len, i
            )
        except ValueError as e:
            raise RequestError(str(e)) from None
        longest = max(len(s) for s in ex)
        if longest > max_len:
            names = ", ".join(repr(k) for k in r if r[k])
            raise RequestError(
                f"input {names}: row {i} is {longest} tokens with the task template; the "
                f"model's context is {max_len} (serve.too_long is refuse: shorten the text)"
            )
        out.append(ex)
    return out


def outputs(model, logits: np.ndarray) -> list[dict]:
    """Output tensors (as InferOutput keyword dicts) for a batch of logits."""
    n = logits.shape[0]
    if model.regression:
        score = logits.reshape(n).astype(np.float32)
        return [
            {"name": "prediction", "shape": [n], "datatype": "FP32", "data": score.tolist()},
            {"name": "score", "shape": [n], "datatype": "FP32", "data": score.tolist()},
        ]
    k = logits.argmax(-1)
    lg = np.maximum(logits.astype(np.float32), schema.MISSING_CHOICE)  # finite for JSON
    out = [{"name": "logits", "shape": list(lg.shape), "datatype": "FP32",
            "data": lg.ravel().tolist()}]  # fmt: skip
    if model.labels:
        out.insert(0, {"name": "prediction", "shape": [n], "datatype": "BYTES",
                       "data": [model.labels[int(j)] for j in k]})  # fmt: skip
        out.append({"name": "labels", "shape": [len(model.labels)], "datatype": "BYTES",
                    "data": list(model.labels)})  # fmt: skip
    else:
        out.insert(0, {"name": "prediction", "shape": [n], "datatype": "INT64",
                       "data": [int(j) for j in k]})  # fmt: skip
    return out
