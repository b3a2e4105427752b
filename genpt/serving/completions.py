"""OpenAI-style completions (`POST /v1/completions`) over the exported KV-cache LM.

temperature 0 is greedy decoding, the same tokens as `genpt generate --greedy`; otherwise
the same sampler (model.onnx_runtime.pick, seeded by `seed`). `logprobs` k gives each
token's log-probability (temperature 1, the model's own distribution) and the k likeliest
alternatives; with `echo` the prompt comes back first, scored the same way (its first
token has none): what evaluation harnesses use to rank answers by likelihood.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from genpt.serving.protocol import RequestError
from model.onnx_runtime import pick


class CompletionRequest(BaseModel):
    """The OpenAI completions fields; the ones genpt does not implement must keep their
    defaults (a 400 names them otherwise)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str | list[str] = ""
    max_tokens: int = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    n: int = Field(1, ge=1, le=1)
    best_of: int | None = Field(None, ge=1, le=1)
    stream: bool = Field(False, description="streaming is not implemented")
    user: str | None = None
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0)
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("at most 4 non-empty stop strings")
        return stops

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, v):
        if v:
            raise ValueError("streaming is not supported; set stream to false")
        return v


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class Completer:
    """One loaded LM (model.onnx_runtime.OnnxLM) answering completion requests."""

    def __init__(self, lm, max_tokens: int, too_long: str):
        self.lm, self.max_tokens, self.too_long = lm, max_tokens, too_long
        self.n_ctx = lm.geo["n_ctx"]

    def _run(self, ids: list[int], past: list[np.ndarray], seq_len: int):
        """All positions' logits (T, V) for `ids` after the cache `past`, and the new cache."""
        feed = {
            "input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, seq_len), np.int64),
        }
        feed.update(zip(self.lm.past_names, past, strict=True))
        logits, *present = self.lm.session.run(None, feed)
        return logits[0], present

    def _token(self, i: int) -> str:
        return self.lm.tok.decode([i], skip_special_tokens=False)

    def _top(self, lp: np.ndarray, k: int) -> dict[str, float]:
        best = np.argsort(-lp)[:k]
        return {self._token(int(j)): float(lp[j]) for j in best}

    def prompt_ids(self, prompt: str, max_tokens: int) -> list[int]:
        ids = self.lm.tok(prompt, add_special_tokens=False)["input_ids"] or [self.lm.eot]
        if len(ids) + max_tokens > self.n_ctx:
            if self.too_long == "refuse":
                raise RequestError(
                    f"prompt: {len(ids)} tokens + max_tokens {max_tokens} exceed the model's "
                    f"context of {self.n_ctx} tokens (serve.too_long is refuse)"
                )
            ids = ids[-max(1, self.n_ctx - max_tokens) :]  # model.generate.fit_prompt's cut
        return ids

    def check(self, req: CompletionRequest) -> None:
        if req.max_tokens > self.max_tokens:
            raise RequestError(f"max_tokens: {req.max_tokens} > serve.max_tokens {self.max_tokens}")
        if req.max_tokens >= self.n_ctx:
            raise RequestError(f"max_tokens: must be below the model's context ({self.n_ctx})")
        if req.max_tokens == 0 and not req.echo:
            raise RequestError("max_tokens: 0 only with echo (scoring the prompt)")

    def complete_one(self, prompt: str, req: CompletionRequest, index: int):
        """One choice, its prompt and completion token counts."""
        ids = self.prompt_ids(prompt, req.max_tokens)
        rng = np.random.default_rng(req.seed or 0)
        geo = self.lm.geo
        past = [np.zeros((1, geo["n_head"], 0, geo["head_dim"]), np.float32)
                for _ in self.lm.past_names]  # fmt: skip
        logits, past = self._run(ids, past, len(ids))
        k = req.logprobs
        toks, lps, tops = [], [], []
        if req.echo and k is not None:
            plp = log_softmax(logits[:-1])
            toks = [self._token(i) for i in ids]
            lps = [None] + [float(plp[t, ids[t + 1]]) for t in range(len(ids) - 1)]
            tops = [None] + [self._top(plp[t], k) if k else None for t in range(len(ids) - 1)]
        out, finish, text = [], "length", ""
        seq_len, last = len(ids), logits[-1]
        for step in range(req.max_tokens):
            nxt = pick(last.astype(np.float64), req.temperature == 0, req.temperature or 1.0,
                       None, req.top_p, rng)  # fmt: skip
            if nxt == self.lm.eot:
                finish = "stop"
                break
            if k is not None:
                lp = log_softmax(last)
                toks.append(self._token(nxt))
                lps.append(float(lp[nxt]))
                tops.append(self._top(lp, k) if k else None)
            out.append(nxt)
            if req.stop:  # the text so far, for the stop strings (else decoded once, below)
                text = self.lm.tok.decode(out, skip_special_tokens=True)
                cut = min((text.find(s) for s in req.stop if s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
            if step + 1 < req.max_tokens:
                seq_len += 1
                logits, past = self._run([nxt], past, seq_len)
                last = logits[-1]
        if not req.stop:
            text = self.lm.tok.decode(out, skip_special_tokens=True)
        prompt_text = prompt if req.echo else ""
        choice = {"index": index, "text": prompt_text + text, "finish_reason": finish,
                  "logprobs": None}  # fmt: skip
        if k is not None:
            offsets, pos = [], 0
            for t in toks:
                offsets.append(pos)
                pos += len(t)
            choice["logprobs"] = {"tokens": toks, "token_logprobs": lps,
                                  "top_logprobs": tops, "text_offset": offsets}  # fmt: skip
        return choice, len(ids), len(out)

    def complete(self, req: CompletionRequest, model: str, version: str) -> dict:
        self.check(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise RequestError("prompt: an empty list")
        choices, n_prompt, n_out = [], 0, 0
        for i, p in enumerate(prompts):
            c, a, b = self.complete_one(p, req, i)
            choices.append(c)
            n_prompt, n_out = n_prompt + a, n_out + b
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": version,  # the bundle version that answered
            "choices": choices,
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_out,
                "total_tokens": n_prompt + n_out,
            },  # fmt: skip
        }
