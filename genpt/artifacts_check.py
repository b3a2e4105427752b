"""Checks of the artifacts a stage reads, made before the stage works.

A damaged artifact is one line, as for other bad input (exit 2): the path, what is
wrong, and what to do, instead of a traceback from deep inside torch, numpy or
tokenizers. What is checked, and how deep:

- token shards: tokens/manifest.json parses; each shard holds its tokens x itemsize
  bytes (at every load) and its sha256 matches (once in each pre-training process,
  before it touches a checkpoint: ~1.8 GB/s, about 1 s for a GPT-1-sized corpus);
- the checkpoint: a complete zip archive whose records pass their CRC32, and a state
  with the keys a resume needs;
- a tokenizer: tokenizer.json (and tokenizer_config.json) parse;
- a model directory (pretrain/hf, finetune/NAME): config.json loads, the weights are
  there and their safetensors headers cover the files, and the tokenizer as above;
  a fine-tuned one also its task.json and head.safetensors;
- the trained vocabulary against tokenizer.vocab_size (trained_vocab).

The fix names the command that rewrites the artifact; when DVC's cache holds the
committed version of it, the message also offers `dvc checkout`.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from genpt import artifacts
from genpt.bundle.manifest import sha256_file
from genpt.errors import GenptError

TOKENIZE = "re-run `genpt tokenize`"
PRETRAIN = "re-run `genpt pretrain`"
# A resume needs these (model/pretrain.py: save_checkpoint, load_checkpoint).
CKPT_KEYS = ("model", "optimizer", "scheduler", "rng", "step")
# BPE may stop up to this share short of tokenizer.vocab_size; more is refused.
VOCAB_SHORTFALL = 0.10
log = logging.getLogger(__name__)


class DamagedArtifact(GenptError):
    """An artifact a stage reads is truncated, altered or incomplete."""


def damaged(path: Path, problem: str, fix: str) -> DamagedArtifact:
    return DamagedArtifact(f"{path}: {problem}; {fix}{_dvc_restore(path)}")


def _dvc_restore(path: Path) -> str:
    """', or `dvc checkout OUT` ...' when DVC's cache holds the committed version of the
    output that holds `path`; else ''. Only on the error path: dvc is slow to import."""
    try:
        from dvc.repo import Repo

        with Repo() as repo:
            for out in repo.index.outs:
                oid = out.hash_info.value if out.hash_info else None
                if (
                    oid
                    and Path(path).resolve().is_relative_to(out.fs_path)
                    and repo.cache.local.exists(oid)
                ):
                    rel = os.path.relpath(out.fs_path)
                    return f", or `dvc checkout {rel}` restores the committed one from the cache"
    except Exception:  # no DVC repo, no lock, no cache: nothing to offer
        pass
    return ""


def _exists(path: Path, fix: str) -> None:
    if not path.is_file():
        raise damaged(path, "missing", fix)


def _json(path: Path, fix: str):
    _exists(path, fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise damaged(path, f"truncated or not JSON ({_first_line(e)})", fix) from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def token_shards(d: Path, splits: Sequence[str] = ("train", "val"), sha: bool = True) -> dict:
    """tokens/manifest.json, after checking each shard of `splits` against it."""
    import numpy as np

    path = d / artifacts.tokens_manifest.name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `genpt tokenize` first")
    m = _json(path, TOKENIZE)
    try:
        itemsize = np.dtype(m["dtype"]).itemsize
        shards = [(d / s["file"], s["tokens"], s["sha256"]) for split in splits for s in m[split]]
    except (KeyError, TypeError) as e:
        raise damaged(path, f"not a tokens manifest (no {e})", TOKENIZE) from e
    for f, tokens, digest in shards:
        _exists(f, TOKENIZE)
        size, want = f.stat().st_size, tokens * itemsize
        if size != want:
            problem = f"{size} bytes, but the manifest's {tokens} {m['dtype']} tokens are {want}"
            raise damaged(f, problem, TOKENIZE)
        if sha and sha256_file(f) != digest:
            raise damaged(f, "sha256 differs from tokens/manifest.json's", TOKENIZE)
    return m


def checkpoint(path: Path) -> dict:
    """The checkpoint's state (tensors memory-mapped), after checking it is complete."""
    import torch

    fix = "delete it (or run without --resume) to start over"
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # every record's CRC32
        state = None if bad else torch.load(path, "cpu", weights_only=False, mmap=True)
    except Exception as e:  # zip, mmap, unpickling: whatever fails, it cannot be resumed
        problem = f"damaged checkpoint, truncated or not a torch file ({_first_line(e)})"
        raise damaged(path, problem, fix) from e
    if bad:
        raise damaged(path, f"damaged checkpoint: record {bad} fails its CRC check", fix)
    missing = [k for k in CKPT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise damaged(path, f"not a genpt checkpoint (no {', '.join(missing)})", fix)
    return state


def tokenizer(path: Path, fix: str = TOKENIZE) -> None:
    """A tokenizer directory (or bare tokenizer.json) that load_tokenizer can read."""
    from tokenizers import Tokenizer

    file = path if path.suffix == ".json" else path / "tokenizer.json"
    _exists(file, fix)
    try:
        Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception on a bad file
        raise damaged(file, f"truncated or not a tokenizer ({_first_line(e)})", fix) from e
    if file != path and (path / "tokenizer_config.json").exists():
        _json(path / "tokenizer_config.json", fix)


def _safetensors(path: Path, fix: str) -> None:
    from safetensors import safe_open

    _exists(path, fix)
    try:
        with safe_open(str(path), "pt"):
            pass  # the header parses and its tensors cover the file exactly
    except Exception as e:  # SafetensorError
        raise damaged(path, f"damaged weights ({_first_line(e)})", fix) from e


def hf_model(path: Path, fix: str, also: Sequence[str] = ()) -> None:
    """A model directory written by save_pretrained, with its tokenizer, and the files
    `also` (.json parse, .safetensors as weights): a fine-tuned model's task.json and head."""
    from transformers import AutoConfig

    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no model ({fix.replace('re-run', 'run')})")
    for f in also:
        (_json if f.endswith(".json") else _safetensors)(path / f, fix)
    _json(path / "config.json", fix)
    try:
        AutoConfig.from_pretrained(str(path))
    except (ValueError, KeyError, OSError) as e:
        raise damaged(path / "config.json", f"not a model config ({_first_line(e)})", fix) from e
    index = path / "model.safetensors.index.json"
    files = sorted(set(_json(index, fix)["weight_map"].values())) if index.exists() else None
    for f in files or ["model.safetensors"]:
        _safetensors(path / f, fix)
    tokenizer(path, fix)


def trained_vocab(trained: int, cfg, corpus: Sequence[str]) -> None:
    """BPE stops short of cfg.vocab_size (tokenizer params) when no pair is left that
    occurs cfg.min_frequency times. Within VOCAB_SHORTFALL of it: a warning; the real
    size is what tokens/manifest.json records and the model is built for
    (len(tokenizer)). Further short: refused, before anything is encoded or written."""
    if trained >= cfg.vocab_size:
        return
    what = (
        f"tokenizer.vocab_size={cfg.vocab_size}, but BPE on {', '.join(corpus)} stops at "
        f"{trained} tokens (no pair left that occurs min_frequency={cfg.min_frequency} times)"
    )
    if trained < cfg.vocab_size * (1 - VOCAB_SHORTFALL):
        raise GenptError(
            f"{what}: more than {VOCAB_SHORTFALL:.0%} short; set tokenizer.vocab_size to "
            f"{trained} or less, or add text to the corpus"
        )
    log.warning("%s; the model is built for %d", what, trained)


def lm_init(init: str, pretrained: Path, tokenizer_dir: Path) -> None:
    """What model.finetune.init_lm reads for `init`: the pre-trained LM, or (scratch) the
    tokenizer."""
    if init == "pretrained":
        hf_model(pretrained, f"{PRETRAIN}, or fine-tune with --init scratch")
    else:
        tokenizer(tokenizer_dir)
