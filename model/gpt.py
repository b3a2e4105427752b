"""The backbone: a transformers GPT-2 (pre-LN, SDPA) or the paper's post-LN OpenAIGPT.

h_0 = U W_e + W_p, h_l = block(h_{l-1}), P(u) = softmax(h_n W_e^T): the LM head is
tied to the token embedding (`tie_word_embeddings=True`).
"""

from __future__ import annotations

from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    OpenAIGPTConfig,
    OpenAIGPTLMHeadModel,
    PreTrainedModel,
)

from model.config import ModelConfig


def build_lm(cfg: ModelConfig, vocab_size: int, special: dict[str, int]) -> PreTrainedModel:
    """A freshly initialised causal LM with tied input/output embeddings."""
    n_layer, n_embd, n_head, n_ctx = cfg.shape()
    common = dict(
        vocab_size=vocab_size,
        n_positions=n_ctx,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        tie_word_embeddings=True,
        bos_token_id=special["start"],
        eos_token_id=special["eot"],
        pad_token_id=special["pad"],
    )
    if cfg.arch == "gpt1":
        return OpenAIGPTLMHeadModel(OpenAIGPTConfig(afn="gelu", **common))
    # GPT-1's GELU, the tanh approximation, as one fused op (gelu_new: ~25% of the forward
    # time of the tiny model on CPU)
    config = GPT2Config(n_inner=4 * n_embd, activation_function="gelu_pytorch_tanh", **common)
    config._attn_implementation = "sdpa"  # flash / memory-efficient kernels where available
    return GPT2LMHeadModel(config)


def n_params(lm: PreTrainedModel, non_embedding: bool = False) -> int:
    """Parameter count (tied weights once); optionally without the position embedding."""
    n = sum(p.numel() for p in lm.parameters())
    if non_embedding:
        wpe = (
            lm.transformer.wpe if hasattr(lm.transformer, "wpe") else lm.transformer.positions_embed
        )
        n -= wpe.weight.numel()
    return n
