"""Where this process runs: its device and its place among torchrun's processes.

Read from the environment torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE), here only; one
process without torchrun is rank 0 of 1. Shared by pre-training and fine-tuning.
"""

from __future__ import annotations

import os


def rank() -> int:
    """Global rank (0 without torchrun)."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """Rank on this node: the CUDA device index."""
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    """Processes in the run (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def resolve_device(name: str):
    """auto | cpu | cuda -> a torch.device (cuda: this process's local rank)."""
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", local_rank())
    return torch.device("cpu")
