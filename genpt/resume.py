"""Safe resume of pre-training under `dvc repro`.

ckpt.pt is a `persist` output in dvc.yaml, so it survives a re-run (an interrupted
`dvc repro` continues where it stopped). It is resumed only if ckpt.json says it was
written with the same seed, model and pretrain params, token shards and training code;
otherwise it is deleted and training starts over.
"""

from __future__ import annotations

import json
from pathlib import Path

from genpt import artifacts, artifacts_check
from genpt.bundle.manifest import sha256_file
from genpt.deps import ROOT, code_deps
from genpt.errors import GenptError
from genpt.ingest.tokens import load_shards
from genpt.io import write_json
from genpt.launch import LAUNCH_KEYS
from genpt.params import Params
from model.pretrain import CKPT, resume_problem
from model.shards import Epochs

FINGERPRINT = artifacts.pretrain_fingerprint.name  # "ckpt.json", beside ckpt.pt
TRAINING = "tasks.pretrain"  # its code, and every repo module it imports (genpt/deps.py)


def fingerprint(params: Params, world: int = 1) -> dict:
    """What a checkpoint must share with this run to be resumed.

    Not how it is launched, and the batch only as a global batch (batch_size x grad_accum
    x world size): a run may resume on another number of processes that keeps it.
    """
    tokens = artifacts.tokens_manifest(params)
    if not tokens.exists():
        raise FileNotFoundError(f"{tokens} missing: run `genpt tokenize` first")
    cfg = params.pretrain
    train = cfg.model_dump(mode="json", exclude={*LAUNCH_KEYS, "batch_size", "grad_accum"})
    train["global_batch"] = cfg.batch_size * cfg.grad_accum * world
    return {
        "seed": params.seed,
        "model": params.model.model_dump(mode="json"),
        "pretrain": train,
        "tokens": sha256_file(tokens),
        "code": {f: sha256_file(ROOT / f) for f in code_deps(TRAINING)},
    }


def prepare(params: Params, world: int = 1) -> bool:
    """True if pretrain/ckpt.pt may be resumed; else delete it and record the new run."""
    out = artifacts.pretrain(params)
    ckpt, path, fp = out / CKPT, out / FINGERPRINT, fingerprint(params, world)
    if ckpt.exists() and path.exists() and json.loads(path.read_text()) == fp:
        return True
    ckpt.unlink(missing_ok=True)
    write_json(path, fp)
    return False


class ResumeError(GenptError):
    """The checkpoint cannot continue with this run's batch and world size."""


def check_resumable(ckpt: Path, params: Params, world: int) -> None:
    """Refuse, before any process starts, a damaged checkpoint or one of another global
    batch or data position."""
    if not ckpt.exists():
        return
    state = artifacts_check.checkpoint(ckpt)
    seq_len = params.pretrain.seq_len or params.model.shape().n_ctx
    stream = Epochs(load_shards(params, "train"), seq_len, params.seed)
    problem = resume_problem(state, params.pretrain, world, stream)
    if problem:
        raise ResumeError(f"cannot resume {ckpt}: {problem}")
