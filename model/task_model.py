"""Fine-tuning model: pre-trained LM + linear head W_y on the extract token.

forward(...) -> (logits, loss) with loss = L3 = L2 + lm_coef * L1, where L2 is the
task loss and L1 the LM loss on the task inputs (padding excluded).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel

from model.schema import MISSING_CHOICE, check_task_type, is_regression

HEAD_FILE, TASK_FILE = "head.safetensors", "task.json"


def lm_loss(lm_logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1: mean next-token cross-entropy over real (non-padding) target tokens."""
    logits = lm_logits[..., :-1, :].flatten(0, -2)
    targets = input_ids[..., 1:].flatten()
    keep = mask[..., 1:].flatten().bool()
    return F.cross_entropy(logits[keep].float(), targets[keep])


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """L2: cross-entropy over classes/choices, or MSE for a regression head."""
    if regression:
        return F.mse_loss(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


class TaskModel(nn.Module):
    """One of the paper's four task types on top of a causal LM.

    input_ids / attention_mask: (B, T) for classification and entailment,
    (B, 2, T) for similarity (both orderings), (B, C, T) for multiple choice.
    num_labels == 1 makes classification/similarity a regression (e.g. STS-B).
    """

    def __init__(
        self, lm: PreTrainedModel, task_type: str, num_labels: int, head_dropout: float = 0.1
    ) -> None:
        super().__init__()
        check_task_type(task_type)
        if task_type == "multiple_choice":
            num_labels = 1  # one shared scalar head, softmax over the answers
        self.lm, self.task_type, self.num_labels = lm, task_type, num_labels
        self.regression = is_regression(task_type, num_labels)
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(lm.config.n_embd, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        lm_coef: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = input_ids.shape[-1]
        ids, mask = input_ids.reshape(-1, t), attention_mask.reshape(-1, t)
        present = mask.sum(-1) > 0  # False for a padded-out missing choice
        # Keep one attended position in empty rows so attention stays finite.
        first = torch.zeros_like(mask)
        first[:, 0] = 1
        safe_mask = torch.where(present[:, None], mask, first)

        hidden = self.lm.transformer(input_ids=ids, attention_mask=safe_mask).last_hidden_state
        last = (safe_mask.sum(-1) - 1).clamp(min=0)  # the extract token (right padding)
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        h = h.reshape(*input_ids.shape[:-1], -1)

        if self.task_type == "similarity":
            h = h.sum(dim=1)  # the two orderings' final states are added
        logits = self.head(self.dropout(h))
        if self.task_type == "multiple_choice":
            valid = present.reshape(input_ids.shape[:-1])
            if logits.dtype != torch.float32:  # bf16 autocast: the sentinel is float32's
                logits = logits.float()
            logits = logits.squeeze(-1).masked_fill(~valid, MISSING_CHOICE)
        elif self.regression:
            logits = logits.squeeze(-1)

        if labels is None:
            return logits, None
        loss = task_loss(logits, labels, self.regression)
        if lm_coef:
            loss = loss + lm_coef * lm_loss(self.lm.lm_head(hidden), ids, mask)
        return logits, loss

    def save(self, out_dir: str | Path, extra: dict | None = None) -> None:
        """HF layout: the LM via save_pretrained, plus head.safetensors and task.json."""
        out = Path(out_dir)
        self.lm.save_pretrained(str(out))
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, out / HEAD_FILE)
        meta = {"task_type": self.task_type, "num_labels": self.num_labels, **(extra or {})}
        (out / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> tuple[TaskModel, dict]:
        """Inverse of save(); returns the model (in eval mode) and task.json's contents."""
        path = Path(path)
        meta = json.loads((path / TASK_FILE).read_text())
        lm = AutoModelForCausalLM.from_pretrained(str(path))
        model = cls(lm, meta["task_type"], meta["num_labels"])
        model.head.load_state_dict(load_file(path / HEAD_FILE))
        return model.eval(), meta
