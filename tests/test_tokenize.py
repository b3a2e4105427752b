"""Tokenization stage: chunking, parallel batch encoding, shards and manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

import model.tokenizer
from genpt.ingest import corpus, tokens
from genpt.params import load_params
from model.tokenizer import fast_encoder, load_tokenizer, train_tokenizer
from tasks import tokenize

TEXT = "The quick brown fox jumps over the lazy dog.\n" * 50


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([TEXT, "Hello world, hello tokens!\n" * 20], 300, 1)


def test_chunks_join_back_and_are_bounded():
    text = "line one\n" * 5000 + "x" * 50_000 + " word" * 8000  # a long line without newline
    pieces = tokens.chunks(text, 1000)
    assert "".join(pieces) == text
    assert max(map(len, pieces)) <= 1000
    assert all(p.startswith("\n") for p in pieces[1:40])  # cut before newlines where possible
    assert any(p.startswith(" word") for p in pieces)  # else before a space


@pytest.mark.parametrize("kind", ["genpt", "gpt2"])
def test_chunks_cut_only_where_the_pre_tokenizer_splits(default_docs, kind):
    """Encoding piece by piece gives the ids of the whole text, whitespace runs included."""
    tok = train_tokenizer(default_docs, 512, 2) if kind == "genpt" else gpt2_style(default_docs)
    text = "Para one.\n\n\n  Indented   line,  two  spaces.\t\n \n" * 20 + "end  \n"
    hf = tok.backend_tokenizer
    whole = hf.encode(text, add_special_tokens=False).ids
    for size in range(40, 100):  # cuts at every offset of the repeated text
        pieces = tokens.chunks(text, size)
        assert len(pieces) > len(text) // size and "".join(pieces) == text
        ids = [i for p in pieces for i in hf.encode(p, add_special_tokens=False).ids]
        assert ids == whole, size


def test_encode_docs_matches_plain_encoding(tok):
    docs = [TEXT, "Hello world, hello tokens!\n" * 3000]
    ids, info = tokens.encode_docs(tok, docs, np.dtype(np.uint16))
    assert info["encoder"] == "tiktoken" and info["pieces_verified"] >= 1
    assert [a.dtype for a in ids] == [np.uint16, np.uint16]
    for d, a in zip(docs, ids, strict=True):
        assert tok.decode(a.tolist()) == d  # byte-level BPE: lossless
    assert ids[0].tolist() == tok.backend_tokenizer.encode(TEXT, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def default_docs():
    return [corpus.read_document(f) for f in corpus.corpus_files(["data/corpus/*.txt"])]


def gpt2_style(docs):
    """A tokenizer with GPT-2's own pre-tokenizer (its look-ahead regex)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    t.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=1024, initial_alphabet=alphabet, show_progress=False)
    t.train_from_iterator(docs, trainer=trainer)
    return model.tokenizer.wrap(t)


@pytest.mark.parametrize("kind", ["genpt", "gpt2"])
def test_fast_encoder_equals_hf_tokenizer_on_the_default_corpus(default_docs, kind):
    """Every piece of data/corpus, plus unicode, digits, odd spaces and a special token."""
    tok = train_tokenizer(default_docs, 2048, 2) if kind == "genpt" else gpt2_style(default_docs)
    fast = fast_encoder(tok)
    extra = ["naïve café — 3.14159 ½ 東京 🙂\t\ttabs  two  spaces\n\n\n", "a<|endoftext|>b", " "]
    pieces = [p for d in default_docs for p in tokens.chunks(d)] + extra
    hf = tok.backend_tokenizer.encode_batch_fast(pieces, add_special_tokens=False)
    for p, h in zip(pieces, hf, strict=True):
        assert fast.encode(p, allowed_special="all") == h.ids, p[:80]


def test_encode_docs_uses_hf_for_other_pre_tokenizers(tok):
    from tokenizers import pre_tokenizers

    other = model.tokenizer.wrap(tok.backend_tokenizer)
    other.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    assert fast_encoder(other) is None
    ids, info = tokens.encode_docs(other, [TEXT], np.dtype(np.uint16))
    assert info["encoder"] == "tokenizers"
    assert ids[0].tolist() == other.backend_tokenizer.encode(TEXT, add_special_tokens=False).ids


def test_encode_docs_falls_back_to_hf_when_the_fast_encoder_differs(tok, monkeypatch):
    class Wrong:  # stands in for a tiktoken encoding that disagrees with the HF tokenizer
        def encode_to_numpy(self, text, allowed_special):
            return np.zeros(3, np.uint32)

    monkeypatch.setattr(model.tokenizer, "fast_encoder", lambda t: Wrong())
    ids, info = tokens.encode_docs(tok, [TEXT], np.dtype(np.uint16))
    assert info["encoder"] == "tokenizers" and info["tiktoken_mismatch"] == 0
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
