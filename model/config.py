"""Typed, validated configuration for the ML engine (litgpt-style).

Every class rejects unknown keys and wrong types; the error names the key.
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base: unknown keys and wrong types are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Shape(NamedTuple):
    """A model's size: layers, embedding width, attention heads, context length."""

    n_layer: int
    n_embd: int
    n_head: int
    n_ctx: int


PRESETS: dict[str, Shape] = {
    "tiny": Shape(n_layer=2, n_embd=64, n_head=4, n_ctx=128),  # tests: < 1M parameters
    "small": Shape(n_layer=6, n_embd=384, n_head=6, n_ctx=256),  # CPU demo: 5-15M parameters
    "gpt1": Shape(n_layer=12, n_embd=768, n_head=12, n_ctx=512),  # the paper's model
}


class ModelConfig(Strict):
    preset: Literal["tiny", "small", "gpt1"] = "small"
    # gpt2: pre-LN, SDPA attention (default). gpt1: the paper's post-LN OpenAIGPT.
    arch: Literal["gpt2", "gpt1"] = "gpt2"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # Optional overrides of the preset's shape.
    n_layer: int | None = Field(None, gt=0)
    n_embd: int | None = Field(None, gt=0)
    n_head: int | None = Field(None, gt=0)
    n_ctx: int | None = Field(None, gt=0)

    def shape(self, check: bool = True) -> Shape:
        """The preset's shape with this config's overrides applied (genpt's params check
        its rules when read, naming the key; `check` repeats the one the model needs)."""
        over = {k: getattr(self, k) for k in Shape._fields if getattr(self, k) is not None}
        shape = PRESETS[self.preset]._replace(**over)
        if check and shape.n_embd % shape.n_head:
            raise ValueError(
                f"model: n_embd {shape.n_embd} is not divisible by n_head {shape.n_head}"
            )
        return shape


class TokenizerConfig(Strict):
    vocab_size: int = Field(8192, ge=300, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    # BPE trains on a seeded random sample of the corpus of at most this many bytes
    sample_bytes: int = Field(100_000_000, gt=0)
    shard_tokens: int = Field(2**27, gt=0)  # ids per token shard (the last one shorter)
    seed: int = 0  # of the BPE sample and of which short documents go to val


class PretrainConfig(Strict):
    steps: int = Field(600, gt=0)
    batch_size: int = Field(16, gt=0)  # sequences per micro-batch (per process)
    grad_accum: int = Field(1, gt=0)
    seq_len: int | None = Field(None, gt=1)  # k, the context window; default: n_ctx
    lr: float = Field(6e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.95, gt=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    eval_every: int = Field(100, gt=0)
    eval_batches: int = Field(10, gt=0)
    ckpt_every: int = Field(200, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Data-parallel processes, launched by the stage on torchrun (docs/distributed.md).
    # auto: one per visible GPU when training on CUDA, else 1. batch_size is per process.
    nproc_per_node: Literal["auto"] | Annotated[int, Field(gt=0)] = "auto"
    nnodes: int = Field(1, gt=0)
    rdzv_endpoint: str | None = None  # host:port every node reaches; needed when nnodes > 1
    rdzv_id: str = Field("genpt", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # one id per job
    rdzv_backend: Literal["c10d", "static"] = "c10d"  # static: ranks by node_rank
    node_rank: int | None = Field(None, ge=0)  # static only: node 0 holds global rank 0
    max_restarts: int = Field(0, ge=0)  # torchrun restarts; a restart resumes from ckpt.pt

    @model_validator(mode="after")
    def _check_launch(self) -> PretrainConfig:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("nnodes > 1 needs rdzv_endpoint (host:port of the rendezvous)")
        static = self.rdzv_backend == "static" and self.nnodes > 1
        if static and (self.node_rank is None or self.node_rank >= self.nnodes):
            raise ValueError(f"rdzv_backend static needs node_rank in [0, {self.nnodes})")
        return self


class FinetuneConfig(Strict):
    lm_coef: float = Field(0.5, ge=0)  # lambda in L3 = L2 + lambda * L1; 0 is the ablation
    init: Literal["pretrained", "scratch"] = "pretrained"  # scratch: no-pretraining ablation
    # at most; with a tune split, early stopping ends a run `patience` epochs after its best
    epochs: int = Field(20, gt=0)
    patience: int = Field(2, gt=0)
    batch_size: int = Field(16, gt=0)
    lr: float = Field(1e-4, gt=0)  # a run's lr: the study's grid (study.lrs) chooses it
    warmup_ratio: float = Field(0.002, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    head_dropout: float = Field(0.1, ge=0, lt=1)
    max_len: int | None = Field(None, gt=8)  # default: the model's n_ctx
    max_train_examples: int | None = Field(None, gt=0)  # a label budget: a seeded sample
    max_dev_examples: int | None = Field(None, gt=0)  # dev rows scored (quick runs)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def input_len(self, n_ctx: int) -> int:
        """Tokens per example: max_len, else the whole context (n_ctx) of the LM tuned."""
        return self.max_len or n_ctx
