"""Text generation from the pre-trained LM (transformers' generate, with KV cache)."""

from __future__ import annotations

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerFast

from model.tokenizer import EOT


def fit_prompt(ids: list[int], n_ctx: int, max_new_tokens: int) -> tuple[list[int], int]:
    """The prompt's tail that leaves room for max_new_tokens (at least one prompt token),
    and how many tokens then fit. PyTorch and ONNX generation both cut prompts this way."""
    ids = list(ids)[-max(1, n_ctx - max_new_tokens) :]
    return ids, min(max_new_tokens, n_ctx - len(ids))


@torch.no_grad()
def generate(
    lm: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    prompt: str,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    seed: int = 0,
) -> str:
    """The continuation of `prompt` (the prompt itself not included)."""
    eot = tok.convert_tokens_to_ids(EOT)
    ids = tok(prompt, add_special_tokens=False)["input_ids"] or [eot]
    ids, max_new_tokens = fit_prompt(ids, lm.config.n_positions, max_new_tokens)
    x = torch.tensor([ids], device=lm.device)
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        temperature=temperature if not greedy else None,
        top_k=top_k if not greedy else None,
        top_p=top_p if not greedy else None,
        use_cache=use_cache,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    torch.manual_seed(seed)
    out = lm.eval().generate(x, attention_mask=torch.ones_like(x), generation_config=cfg)
    return tok.decode(out[0, x.shape[1] :], skip_special_tokens=True)
