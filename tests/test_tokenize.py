"""Tokenization stage: chunking, parallel batch encoding, shards and manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import model.tokenizer
from genpt.bundle.manifest import sha256_file
from genpt.ingest import corpus, tokens
from genpt.params import load_params
from model.tokenizer import EOT, fast_encoder, load_tokenizer, train_tokenizer
from tasks import tokenize

MEMORY_BOUND_GB = 1.0  # tokenize, any corpus size (the target: 3 GB)
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


def encoded(tmp_path, tok, docs, workers=None, shard_tokens=1000) -> tuple:
    """encode_corpus on `docs` (named doc0.txt, ...) into tmp_path/NAME: (dir, entries)."""
    d = tmp_path / f"tokens-{workers}"
    d.mkdir()
    out = tokens.encode_corpus(
        [corpus.Document(f"doc{i}.txt", t) for i, t in enumerate(docs)], tok, d,
        dtype=np.dtype(np.uint16), eot=tok.convert_tokens_to_ids(EOT), val_fraction=0.1,
        seed=0, shard_tokens=shard_tokens, workers=workers,
    )  # fmt: skip
    return d, out


def test_encode_corpus_writes_fixed_size_shards_and_a_document_index(tmp_path, tok):
    docs = [TEXT, "Hello world, hello tokens!\n" * 3000, "A short one.\n", "Two\nlines.\n"]
    d, out = encoded(tmp_path, tok, docs)
    assert out["encoder"]["encoder"] == "tiktoken" and out["encoder"]["pieces_verified"] >= 1
    hf, eot = tok.backend_tokenizer, tok.convert_tokens_to_ids(EOT)
    for i, split in enumerate(tokens.SPLITS):
        shards = out[split]["shards"]
        assert [s["file"] for s in shards][:2] == [f"{split}-00000.bin", f"{split}-00001.bin"]
        assert {s["tokens"] for s in shards[:-1]} == {1000} and 0 < shards[-1]["tokens"] <= 1000
        assert all(s["sha256"] == sha256_file(d / s["file"]) for s in shards)
        ids = np.concatenate([np.fromfile(d / s["file"], np.uint16) for s in shards])
        parts = [tokens.split_document(t, 0.1, 0, k)[i] for k, t in enumerate(docs)]
        want = [hf.encode(p, add_special_tokens=False).ids + [eot] for p in parts if p]
        assert ids.tolist() == [x for w in want for x in w]  # in corpus order, eot after each
        starts = np.fromfile(d / out[split]["index"]["file"], np.int64)
        assert starts.tolist() == np.cumsum([0] + [len(w) for w in want])[:-1].tolist()
    # the same shards from one worker as from two
    _, one = encoded(tmp_path, tok, docs, workers=1)
    assert one == out


def test_val_split_tail_of_long_documents_short_ones_whole_and_seeded():
    long = "".join(f"line {i}\n" for i in range(100))
    train, val = tokens.split_document(long, 0.05, 0, 7)
    assert train + val == long and val == "".join(f"line {i}\n" for i in range(95, 100))
    one = "one line\n"
    short = [tokens.split_document(one, 0.1, seed, k) for seed in (0, 1) for k in range(2000)]
    in_val = [v == one and t == "" for t, v in short]
    assert all(in_val[i] or short[i] == (one, "") for i in range(4000))
    assert 0.08 < np.mean(in_val[:2000]) < 0.12 and in_val[:2000] != in_val[2000:]  # seeded
    assert short[:5] == [tokens.split_document(one, 0.1, 0, k) for k in range(5)]


def test_bpe_sample_is_bounded_seeded_and_whole_when_the_corpus_is_small():
    line = "word " * 19 + "word\n"
    docs = [f"Document {k}:\n" + line * 1000 for k in range(30)]  # 2 pieces each
    a = tokens.sample(docs, 0.05, 0, 400_000)
    assert 300_000 < sum(map(len, a)) <= 400_000 and a == tokens.sample(docs, 0.05, 0, 400_000)
    assert a != tokens.sample(docs, 0.05, 1, 400_000)  # the seed draws it (not the val split)
    ks = sorted(int(p.split(":")[0].split()[1]) for p in a if p.startswith("Document"))
    assert len(ks) > 1 and ks != list(range(ks[0], ks[0] + len(ks)))  # not a run of documents
    whole = tokens.sample(docs, 0.05, 0, 10**9)
    assert "".join(whole) == "".join(
        tokens.split_document(t, 0.05, 0, k)[0] for k, t in enumerate(docs)
    )


def test_encode_corpus_uses_hf_for_other_pre_tokenizers(tmp_path, tok):
    from tokenizers import pre_tokenizers

    other = model.tokenizer.wrap(tok.backend_tokenizer)
    other.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    assert fast_encoder(other) is None
    d, out = encoded(tmp_path, other, [TEXT], workers=1)
    assert out["encoder"] == {"encoder": "tokenizers", "pieces": 2}  # train, val
    ids = np.fromfile(d / "train-00000.bin", np.uint16).tolist()
    train = tokens.split_document(TEXT, 0.1, 0, 0)[0]
    assert ids[:-1] == other.backend_tokenizer.encode(train, add_special_tokens=False).ids


def test_a_tiktoken_mismatch_is_an_error_naming_the_document_and_line(tmp_path, tok):
    """A BPE whose vocabulary holds a token no merge makes: tiktoken (ranks from the
    vocabulary) forms it, the HF tokenizer cannot. No fallback: the stage stops."""
    from tokenizers import Tokenizer

    spec = json.loads(tok.backend_tokenizer.to_str())
    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if "".join(m) != "Ġlazy"]
    broken = model.tokenizer.wrap(Tokenizer.from_str(json.dumps(spec)))
    clean = "Hello world, hello tokens!\n" * 18
    assert fast_encoder(broken).encode(clean) == broken.backend_tokenizer.encode(clean).ids
    with pytest.raises(tokens.TokenizeError, match=r"^doc1.txt: line 19: tiktoken and the HF"):
        encoded(tmp_path, broken, [clean, clean + "the lazy dog\n" * 2], workers=1)


def test_stage_writes_shards_and_manifest_and_reruns_as_a_no_op(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\ufeff" + "Alpha beta gamma.\r\n" * 400, encoding="utf-8")
    (corpus / "b.txt").write_text("Delta epsilon zeta eta.\n" * 300, encoding="utf-8")
    over = [f"paths.corpus=[{corpus}/*.txt]", f"paths.artifacts={tmp_path / 'art'}",
            "tokenizer.vocab_size=300", "paths.val_fraction=0.1",
            "tokenizer.shard_tokens=1000"]  # fmt: skip
    out = tokenize.run(load_params("params.yaml", over))
    d = tmp_path / "art" / "tokens"
    m = json.loads((d / "manifest.json").read_text())
    assert m["dtype"] == "uint16" and 256 < m["vocab_size"] <= 300  # small corpus: < 300 merges
    assert [f["path"].rsplit("/", 1)[-1] for f in m["files"]] == ["a.txt", "b.txt"]
    assert m["index"]["train"]["documents"] == m["index"]["val"]["documents"] == 2
    shards = {s: [np.fromfile(d / e["file"], np.uint16) for e in m[s]] for s in ("train", "val")}
    assert [a.size for a in shards["train"]] == [e["tokens"] for e in m["train"]]
    assert len(shards["train"]) > 1 and shards["train"][0].size == 1000
    train = np.concatenate(shards["train"])
    loaded = tokens.load_shards(load_params("params.yaml", over), "train")  # pretrain reads
    assert all(np.array_equal(x, y) for x, y in zip(loaded.shards, shards["train"], strict=True))
    assert out["tokens"] == sum(a.size for s in shards.values() for a in s)
    assert out["encode_mb_per_s"] > 0 and out["documents"] == 2
    assert (train == m["eot"]).sum() == 2  # one end-of-text per document
    tok = load_tokenizer(tmp_path / "art" / "tokenizer")
    text = tok.decode(train.tolist())
    assert "\r" not in text and "\ufeff" not in text and text.count("Alpha beta gamma.\n") == 360
    # unchanged corpus and params, outputs intact: nothing is rewritten
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "art").rglob("*")}
    assert tokenize.run(load_params("params.yaml", over)) == {"unchanged": True, **out_tokens(out)}
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "art").rglob("*")} == before
    # deterministic: another run (a damaged shard forces it) gives identical outputs
    (d / m["val"][0]["file"]).write_bytes(b"xx")
    tokenize.run(load_params("params.yaml", over))
    assert json.loads((d / "manifest.json").read_text()) == m
    assert (d / m["val"][0]["file"]).stat().st_size == 2 * m["val"][0]["tokens"]  # rewritten
    assert not list((tmp_path / "art").glob(".*"))  # no temp dirs left
    # a changed corpus file re-runs it
    (corpus / "b.txt").write_text("Delta epsilon zeta eta.\n" * 301, encoding="utf-8")
    assert "unchanged" not in tokenize.run(load_params("params.yaml", over))


def out_tokens(out: dict) -> dict:
    return {"tokens": out["tokens"]}


@pytest.mark.slow
def test_tokenize_memory_does_not_grow_with_the_corpus(tmp_path, shared_data):
    """`genpt tokenize` on ~50 MB of distinct documents, then on 4x that: the peak memory
    (PSS) of all its processes stays under MEMORY_BOUND_GB and grows by less than half the
    added text (measured: 0.37 -> 0.38 GB; holding the corpus's text once: 0.45 -> 0.74 GB)."""
    import sys

    from bench.corpus_scale import make_corpus, run_stage

    peaks, added_gb = [], 0.15
    for gb in (0.05, 0.2):
        d = tmp_path / f"c{gb}"
        make_corpus(d / "text", gb, shared_data, doc_mb=1)
        sets = [f"paths.corpus=[{d}/text/*.txt]", f"corpus.root={d}/text",
                f"paths.artifacts={d}/art", "tokenizer.vocab_size=1024",
                "tokenizer.sample_bytes=5000000", "tokenizer.shard_tokens=4000000"]  # fmt: skip
        genpt = str(Path(sys.executable).with_name("genpt"))
        r = run_stage([genpt, "tokenize", *[x for s in sets for x in ("-S", s)]], d / "log")
        assert r["rc"] == 0, (d / "log").read_text()[-2000:]
        peaks.append(r["tree_pss_gb"])
    m = json.loads((d / "art" / "tokens" / "manifest.json").read_text())
    assert len(m["train"]) > 10  # 4M-token shards
    assert peaks[1] < MEMORY_BOUND_GB, peaks
    assert peaks[1] - peaks[0] < added_gb / 2, peaks
