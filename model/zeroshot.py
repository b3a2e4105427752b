"""Zero-shot multiple choice with the pre-trained LM alone (GPT-1, Section 5, Figure 2).

No fine-tuning: each answer is scored by the average log-probability of its tokens
given the context and question, and the likeliest answer is picked. A model that was
never pre-trained has nothing to score with, so this measures what pre-training taught.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from model.schema import MISSING_CHOICE


@torch.no_grad()
def answer_logprobs(
    lm: PreTrainedModel, prefix: list[int], answers: list[list[int]]
) -> list[float]:
    """Mean log P(answer tokens | prefix) per answer, in one batch; a prefix too long
    for the context keeps its tail."""
    n_ctx = lm.config.n_positions
    seqs, starts = [], []
    for answer in answers:
        answer = answer[: n_ctx - 1]
        keep = prefix[max(0, len(prefix) - (n_ctx - len(answer))) :]
        seqs.append(keep + answer)
        starts.append(max(len(keep) - 1, 0))  # first prediction that is an answer token
    width = max(map(len, seqs))
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    logp = F.log_softmax(lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    picked = logp.gather(-1, ids[:, 1:, None])[..., 0]
    out = []
    for i, s in enumerate(seqs):
        scores = picked[i, starts[i] : len(s) - 1]
        out.append(float(scores.mean()) if len(scores) else float("-inf"))  # no prefix, 1 token
    return out


def score_choices(
    lm: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, records: Sequence[dict]
) -> np.ndarray:
    """(rows, most choices) mean answer log-probabilities; MISSING_CHOICE where a row
    has fewer."""
    lm.eval()

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    width = max(len(r["choices"]) for r in records)
    out = np.full((len(records), width), MISSING_CHOICE)
    for i, r in enumerate(records):
        prefix = ids(" ".join(t for t in (r.get("context"), r.get("question")) if t))
        scores = answer_logprobs(lm, prefix, [ids(" " + c) for c in r["choices"]])
        out[i, : len(scores)] = scores
    return out
