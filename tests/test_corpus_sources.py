"""Corpus sources (genpt/ingest/corpus.py): every format and store reads the same text the
same way, down to the token shards; a mis-declared or damaged file fails naming itself."""

from __future__ import annotations

import gzip
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genpt.ingest import corpus
from genpt.params import Params
from tasks import tokenize, validate
from tests.conftest import ROOT
from tests.test_bad_inputs import no_partial_output

FILES = ("alice.txt", "frankenstein.txt", "sherlock_holmes.txt")
CHARS = 12_000  # per document: enough text for a 512 vocab, cheap to tokenize


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    """Three documents cut from data/corpus, as the text reader decodes them."""
    return {f: corpus.read_document(ROOT / "data" / "corpus" / f)[:CHARS] for f in FILES}


def tokenized(tmp_path, sources: list[str], **reader) -> dict:
    """Run the real tokenize stage; the manifest's shard entries (tokens, sha256)."""
    p = Params(
        paths={"corpus": sources, "artifacts": str(tmp_path / "art")},
        corpus=reader,
        tokenizer={"vocab_size": 512},
    )
    tokenize.run(p)
    m = json.loads((p.artifacts("tokens") / "manifest.json").read_text())
    return {"shards": m["train"] + m["val"], "tokenizer": m["tokenizer_sha256"]}


def write_text(d, texts, suffix="", opener=None) -> str:
    d.mkdir()
    for name, text in texts.items():
        path = d / (name + suffix)
        if suffix == ".zst":
            with pa.output_stream(str(path), compression="zstd") as f:
                f.write(text.encode())
        else:
            with (opener or open)(path, "wb") as f:
                f.write(text.encode())
    return str(d / f"*{suffix}")


@pytest.fixture(scope="module")
def plain(tmp_path_factory, texts) -> dict:
    tmp = tmp_path_factory.mktemp("plain")
    return tokenized(tmp, [write_text(tmp / "c", texts)])


def test_compressed_text_tokenizes_like_plain_text(tmp_path, texts, plain):
    gz = write_text(tmp_path / "gz", texts, ".gz", gzip.open)
    zst = write_text(tmp_path / "zst", texts, ".zst")
    assert list(corpus.iter_documents([gz]))[1].text == texts["frankenstein.txt"]
    assert tokenized(tmp_path / "a", [gz]) == plain
    assert tokenized(tmp_path / "b", [zst]) == plain


def test_jsonl_and_parquet_tokenize_like_plain_text(tmp_path, texts, plain):
    rows = [{"id": i, "body": t} for i, t in enumerate(texts.values())]
    jl = tmp_path / "c.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=2)
    docs = list(corpus.iter_documents([str(jl)], corpus_cfg(text_field="body")))
    assert [d.name for d in docs][-1] == f"{jl}: line 3"
    assert [d.text for d in docs] == list(texts.values())
    assert tokenized(tmp_path / "a", [str(jl)], text_field="body") == plain
    assert tokenized(tmp_path / "b", [str(tmp_path / "c.parquet")], text_field="body") == plain
    # the same JSONL through the `datasets` json builder, streamed
    assert tokenized(tmp_path / "c", [str(jl)], text_field="body", builder="json") == plain
    # validation: one row per JSONL line
    p = Params(
        paths={"corpus": [str(jl)], "artifacts": str(tmp_path / "v")}, corpus={"text_field": "body"}
    )
    assert validate.run(p)["corpus"]["files"] == 3


def test_a_datasets_directory_tokenizes_like_plain_text(tmp_path, texts, plain):
    import datasets

    datasets.Dataset.from_dict({"text": list(texts.values())}).save_to_disk(tmp_path / "ds")
    assert corpus.format_of(str(tmp_path / "ds")) == "datasets"
    assert tokenized(tmp_path, [str(tmp_path / "ds")]) == plain


def test_s3_text_tokenizes_like_plain_text(s3_env, tmp_path, texts, plain):
    from genpt.stack.storage import s3_client

    client = s3_client()
    for name, text in texts.items():
        body = gzip.compress(text.encode())
        client.put_object(Bucket="genpt-dvc", Key=f"corpus/{name}.gz", Body=body)
    url = "s3://genpt-dvc/corpus/*.gz"
    assert corpus.corpus_files([url])[0] == "s3://genpt-dvc/corpus/alice.txt.gz"
    assert tokenized(tmp_path, [url]) == plain
    m = json.loads((tmp_path / "art" / "tokens" / "manifest.json").read_text())
    first = m["files"][0]
    assert first["path"] == "s3://genpt-dvc/corpus/alice.txt.gz"
    body = client.get_object(Bucket="genpt-dvc", Key="corpus/alice.txt.gz")["Body"].read()
    assert first["sha256"] == hashlib.sha256(body).hexdigest()


def corpus_cfg(**kw):
    from genpt.params import CorpusConfig

    return CorpusConfig(**kw)


# --- bad input: its own clear error, nothing written -------------------------------------


def fails(tmp_path, sources, match, **reader) -> None:
    p = Params(
        paths={"corpus": [str(s) for s in sources], "artifacts": str(tmp_path / "art")},
        corpus=reader,
        tokenizer={"vocab_size": 300},
    )
    for stage, out in ((tokenize, ("tokenizer", "tokens")), (validate, ("validate",))):
        with pytest.raises(corpus.CorpusError, match=match):
            stage.run(p)
        no_partial_output(tmp_path, out)


def test_jsonl_declared_as_text_is_refused(tmp_path, texts):
    good = tmp_path / "good.txt"
    good.write_text(texts["alice.txt"])
    jl = tmp_path / "books.jsonl"
    jl.write_text(json.dumps({"text": texts["alice.txt"]}) + "\n")
    fails(tmp_path, [good, jl], r"books.jsonl: a jsonl source, but corpus.format is text",
          format="text")  # fmt: skip
    hidden = tmp_path / "books.txt"  # JSON lines behind a .txt name
    hidden.write_text("\n" + jl.read_text())
    fails(tmp_path, [good, hidden], r"books.txt: line 2 is a JSON object, not text")
    hidden.write_text("[1] A footnote, then the text.\n" + texts["alice.txt"])  # not JSON lines
    assert corpus.read_document(hidden).startswith("[1] A footnote")


def test_truncated_gzip_fails_naming_the_file(tmp_path, texts):
    data = gzip.compress(texts["alice.txt"].encode())
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(texts["frankenstein.txt"].encode()))
    (tmp_path / "b.txt.gz").write_bytes(data[: len(data) // 2])
    fails(tmp_path, [tmp_path / "a.txt.gz", tmp_path / "b.txt.gz"],
          r"b.txt.gz: cannot read: Truncated compressed stream")  # fmt: skip


def test_parquet_without_the_text_field_fails_naming_file_and_field(tmp_path, texts):
    pq.write_table(pa.table({"body": list(texts.values())}), tmp_path / "c.parquet")
    fails(tmp_path, [tmp_path / "c.parquet"], r"c.parquet: no text field 'text' \(columns: body\)")


def test_bad_jsonl_rows_fail_naming_the_line(tmp_path):
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"text": "fine"}\n\n{"text": 3}\n')
    fails(tmp_path, [jl], rf"^{jl}: line 3: text field 'text' is a int, not a string$")
    jl.write_text('{"text": "fine"}\n{"text": "cut\n')
    fails(tmp_path, [jl], rf"^{jl}: line 2: not JSON \(")


def test_under_dvc_a_file_outside_corpus_root_is_refused(tmp_path, monkeypatch, texts):
    (tmp_path / "a.txt").write_text(texts["alice.txt"])
    monkeypatch.setenv("DVC_STAGE", "tokenize")
    fails(tmp_path, [tmp_path / "a.txt"], r"a.txt is outside corpus.root \(data/corpus\)")
    assert corpus.first_document([str(tmp_path / "a.txt")], corpus_cfg(root=str(tmp_path)))


@pytest.mark.parametrize("name", ["params.yaml", "recipes/cpu-hour.yaml"])
def test_shipped_params_keep_the_corpus_under_corpus_root(name, shared_data):
    """Else `dvc repro` refuses the corpus (and dvc would miss its edits)."""
    from genpt.params import load_params

    p = load_params(ROOT / name)
    files = corpus.corpus_files([str(ROOT / f) for f in p.paths.corpus])
    assert len(files) >= 5
    assert corpus.outside_root(files, str(ROOT / p.corpus.root)) == []
