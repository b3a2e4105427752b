"""Zero-shot multiple choice (model/zeroshot.py) against a one-answer-at-a-time reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.gpt import build_lm
from model.zeroshot import answer_logprobs


@torch.no_grad()
def reference(lm, prefix: list[int], answer: list[int]) -> float:
    """Sum of log P(a_j | prefix, a_<j) over answer tokens, one unpadded pass, / length."""
    ids = torch.tensor([prefix + answer])
    logp = F.log_softmax(lm(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[len(prefix) + j - 1, a]) for j, a in enumerate(answer)) / len(answer)


def test_batched_scores_equal_the_reference_and_long_prefixes_keep_their_tail():
    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", dropout=0.0, n_ctx=32)
    lm = build_lm(cfg, 300, {"pad": 0, "eot": 1, "start": 2}).eval()
    prefix, answers = [5, 9, 14, 2, 77], [[8], [100, 3, 4], [250, 251]]
    got = answer_logprobs(lm, prefix, answers)
    for g, a in zip(got, answers, strict=True):
        assert abs(g - reference(lm, prefix, a)) < 1e-5
    long = list(range(10, 60))  # 50 tokens: only the last 32 - len(answer) fit
    got = answer_logprobs(lm, long, [[7, 8]])
    assert abs(got[0] - reference(lm, long[-30:], [7, 8])) < 1e-5
