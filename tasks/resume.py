"""Safe resume of pre-training under `dvc repro`.

ckpt.pt is a `persist` output in dvc.yaml, so it survives a re-run (an interrupted
`dvc repro` continues where it stopped). It is resumed only if ckpt.json says it was
written with the same seed, model and pretrain params, token shards and training code;
otherwise it is deleted and training starts over.
"""

from __future__ import annotations

import json
from pathlib import Path

from model.pretrain import CKPT
from tasks.bundle.manifest import sha256_file
from tasks.io import write_json
from tasks.params import Params

FINGERPRINT = "ckpt.json"
ROOT = Path(__file__).resolve().parents[1]
CODE = (
    "model/config.py",
    "model/data.py",
    "model/gpt.py",
    "model/optim.py",
    "model/pretrain.py",
    "tasks/pretrain.py",
)


def fingerprint(params: Params) -> dict:
    tokens = params.artifacts("tokens", "manifest.json")
    if not tokens.exists():
        raise FileNotFoundError(f"{tokens} missing: run `genpt tokenize` first")
    return {
        "seed": params.seed,
        "model": params.model.model_dump(mode="json"),
        "pretrain": params.pretrain.model_dump(mode="json"),
        "tokens": sha256_file(tokens),
        "code": {f: sha256_file(ROOT / f) for f in CODE},
    }


def prepare(params: Params) -> bool:
    """True if pretrain/ckpt.pt may be resumed; else delete it and record the new run."""
    out = params.artifacts("pretrain")
    ckpt, path, fp = out / CKPT, out / FINGERPRINT, fingerprint(params)
    if ckpt.exists() and path.exists() and json.loads(path.read_text()) == fp:
        return True
    ckpt.unlink(missing_ok=True)
    write_json(path, fp)
    return False
