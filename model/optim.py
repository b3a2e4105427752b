"""The optimizer's parameter groups, shared by pre-training and fine-tuning."""

from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two AdamW groups: weight decay on matrices only.

    Biases, LayerNorm gains and other vectors (dim < 2) are not decayed.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
