"""What the tokenize stage's outputs are a function of, and whether intact outputs made
from the same inputs exist already (then the stage does nothing)."""

from __future__ import annotations

import resource

from genpt import artifacts
from genpt.artifacts_check import token_shards
from genpt.bundle.manifest import sha256_file
from genpt.errors import GenptError
from genpt.ingest.corpus import corpus_files, iter_documents, sha256
from genpt.io import read_json

FORMAT = 2  # 2: fixed-size shards, a document index, BPE on a sample


def unlabeled_files(params) -> list[str]:
    """The in-domain text files (stage unlabeled) that join paths.corpus, sorted."""
    return sorted(str(f) for f in artifacts.unlabeled(params).glob("*.txt"))


def unlabeled_documents(params):
    """The in-domain text's documents (one per dataset), after paths.corpus's."""
    from genpt.params import CorpusConfig

    files = unlabeled_files(params)
    cfg = CorpusConfig(root=str(artifacts.unlabeled(params)), format="text")
    return iter_documents(files, cfg) if files else iter(())


def inputs(params) -> dict:
    """What the outputs are a function of: the sources' sha256 and the params read."""
    files = [*corpus_files(params.paths.corpus), *unlabeled_files(params)]
    return {
        "format": FORMAT,
        "files": [{"path": f, "sha256": sha256(f)} for f in files],
        "val_fraction": params.paths.val_fraction,
        "corpus": params.corpus.model_dump(),
        "tokenizer": params.tokenizer.model_dump(),
    }


def unchanged(params, want: dict) -> dict | None:
    """The manifest of intact outputs made from `want`, else None."""
    d = artifacts.tokens(params)
    m = read_json(artifacts.tokens_manifest(params))
    if not m or m.get("inputs") != want:
        return None
    try:
        token_shards(d)
        ok = sha256_file(artifacts.tokenizer(params) / "tokenizer.json") == m["tokenizer_sha256"]
    except (GenptError, OSError, KeyError):
        return None
    return m if ok else None


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (the encoding workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def manifest_of(tok, dtype, out: dict, want: dict, tokenizer_sha256: str) -> dict:
    """tokens/manifest.json: what the shards hold and what made them (`encode_corpus`'s
    `out`, the stage's inputs `want`)."""
    from model.tokenizer import EOT

    return {
        "vocab_size": len(tok),
        "dtype": dtype.name,
        "eot": tok.convert_tokens_to_ids(EOT),
        "tokenizer_sha256": tokenizer_sha256,
        "val_fraction": want["val_fraction"],
        "encoder": out["encoder"],
        "files": want["files"],
        "inputs": want,
        "train": out["train"]["shards"],
        "val": out["val"]["shards"],
        "index": {s: out[s]["index"] for s in ("train", "val")},
    }
