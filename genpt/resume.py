"""Safe resume of pre-training under `dvc repro`.

ckpt.pt is a `persist` output in dvc.yaml, so it survives a re-run (an interrupted
`dvc repro` continues where it stopped). It is resumed only if ckpt.json says it was
written with the same seed, model and pretrain params, token shards and training code;
otherwise it is deleted and training starts over.
"""

from __future__ import annotations

import json

from genpt.bundle.manifest import sha256_file
from genpt.deps import ROOT, code_deps
from genpt.io import write_json
from genpt.launch import LAUNCH_KEYS
from genpt.params import Params
from model.pretrain import CKPT

FINGERPRINT = "ckpt.json"
TRAINING = "tasks.pretrain"  # its code, and every repo module it imports (genpt/deps.py)


def fingerprint(params: Params, world: int = 1) -> dict:
    """What a checkpoint must share with this run to be resumed.

    Not how it is launched, and the batch only as a global batch (batch_size x grad_accum
    x world size): a run may resume on another number of processes that keeps it.
    """
    tokens = params.artifacts("tokens", "manifest.json")
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
    out = params.artifacts("pretrain")
    ckpt, path, fp = out / CKPT, out / FINGERPRINT, fingerprint(params, world)
    if ckpt.exists() and path.exists() and json.loads(path.read_text()) == fp:
        return True
    ckpt.unlink(missing_ok=True)
    write_json(path, fp)
    return False
