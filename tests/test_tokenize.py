"""Tokenization stage: chunking, parallel batch encoding, shards and manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.tokenizer import load_tokenizer, train_tokenizer
from tasks import tokenize
from tasks.params import load_params

TEXT = "The quick brown fox jumps over the lazy dog.\n" * 50


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([TEXT, "Hello world, hello tokens!\n" * 20], 300, 1)


def test_chunks_join_back_and_are_bounded():
    text = "line one\n" * 5000 + "x" * 50_000 + " word" * 8000  # a long line without newline
    pieces = tokenize.chunks(text, 1000)
    assert "".join(pieces) == text
    assert max(map(len, pieces)) <= 1000
    assert all(p.endswith("\n") for p in pieces[:40])  # cut after newlines where possible
    assert any(p.startswith(" word") for p in pieces)  # else before a space


def test_encode_docs_matches_plain_encoding(tok):
    docs = [TEXT, "Hello world, hello tokens!\n" * 3000]
    ids = tokenize.encode_docs(tok, docs, np.dtype(np.uint16))
    assert [a.dtype for a in ids] == [np.uint16, np.uint16]
    for d, a in zip(docs, ids, strict=True):
        assert tok.decode(a.tolist()) == d  # byte-level BPE: lossless
    assert ids[0].tolist() == tok.backend_tokenizer.encode(TEXT, add_special_tokens=False).ids


def test_stage_writes_shards_and_manifest(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\ufeff" + "Alpha beta gamma.\r\n" * 400, encoding="utf-8")
    (corpus / "b.txt").write_text("Delta epsilon zeta eta.\n" * 300, encoding="utf-8")
    over = [f"paths.corpus=[{corpus}/*.txt]", f"paths.artifacts={tmp_path / 'art'}",
            "tokenizer.vocab_size=300", "paths.val_fraction=0.1"]  # fmt: skip
    out = tokenize.run(load_params("params.yaml", over))
    d = tmp_path / "art" / "tokens"
    m = json.loads((d / "manifest.json").read_text())
    assert m["dtype"] == "uint16" and 256 < m["vocab_size"] <= 300  # small corpus: < 300 merges
    assert [f["path"].rsplit("/", 1)[-1] for f in m["files"]] == ["a.txt", "b.txt"]
    train = np.fromfile(d / "train.bin", np.uint16)
    val = np.fromfile(d / "val.bin", np.uint16)
    assert m["train"][0]["tokens"] == train.size and m["val"][0]["tokens"] == val.size
    assert out["tokens"] == train.size + val.size and out["encode_mb_per_s"] > 0
    assert (train == m["eot"]).sum() == 2  # one end-of-text per document
    tok = load_tokenizer(tmp_path / "art" / "tokenizer")
    text = tok.decode(train.tolist())
    assert "\r" not in text and "\ufeff" not in text and text.count("Alpha beta gamma.\n") == 360
    # deterministic: a second run gives byte-identical shards and tokenizer
    tokenize.run(load_params("params.yaml", over))
    m2 = json.loads((d / "manifest.json").read_text())
    assert m2 == m
    assert not list((tmp_path / "art").glob(".*"))  # no temp dirs left
