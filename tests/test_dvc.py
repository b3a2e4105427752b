"""Real `dvc` with the S3 remote on SeaweedFS, and the dvc.yaml pipeline end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genpt.stack import seaweedfs as stack
from tests.conftest import TINY, clone_repo, workspace_copy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GENPT_S3_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1", **extra)
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    return env


def sh(cwd: Path, *args: str, ok: bool = True, **env) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=cwd, env=_env(**env), capture_output=True, text=True)
    if ok and p.returncode:
        raise AssertionError(f"{' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _repo(path: Path, weed, prefix: str) -> Path:
    path.mkdir()
    sh(path, "git", "init", "-q")
    sh(path, "dvc", "init", "-q")
    sh(path, "dvc", "remote", "add", "-d", "storage", f"s3://genpt-dvc/{prefix}")
    stack.configure_dvc_remote(path, weed)
    return path


def test_push_pull_round_trip(weed, tmp_path):
    repo = _repo(tmp_path / "repo", weed, "roundtrip")
    data = os.urandom(2_000_000)
    (repo / "shard.bin").write_bytes(data)
    sh(repo, "dvc", "add", "shard.bin")
    assert "config.local" not in sh(repo, "git", "status", "--porcelain", "-uall").stdout
    assert weed.secret_key not in (repo / ".dvc" / "config").read_text()
    sh(repo, "dvc", "push")  # credentials come from .dvc/config.local only (env cleared)

    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "shard.bin").unlink()
    sh(repo, "dvc", "pull")
    assert (repo / "shard.bin").read_bytes() == data


def test_push_with_wrong_secret_fails(weed, tmp_path):
    repo = _repo(tmp_path / "repo", weed, "refused")
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "secret_access_key", "wrong")
    (repo / "f.txt").write_text("x")
    sh(repo, "dvc", "add", "f.txt")
    p = sh(repo, "dvc", "push", ok=False)
    assert p.returncode != 0
    assert "wrong" not in p.stderr.lower().replace("something went wrong", "")


def _ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.mark.slow
def test_pipeline_repro_is_incremental(pipeline_run, tmp_path):
    """After the TINY pipeline (`genpt pipeline -S ...`), the same values written to
    params.yaml make `dvc repro` a no-op; one dataset's change re-runs only its stages."""
    from flows.pipeline import write_params

    repo = workspace_copy(pipeline_run, tmp_path / "repo")
    env = {"PYTHONPATH": str(repo), "TQDM_DISABLE": "1"}
    assert (repo / "artifacts/registry/models/genpt/latest").exists()
    write_params(repo, TINY)  # what the flow's -S wrote for its run, now in the file

    second = sh(repo, "dvc", "repro", **env).stdout
    assert _ran(second) == set() and "up to date" in second

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny params")
    # one dataset's fine-tuning param (a smaller budget, and no int8/fp16 export: quicker)
    cheaper = ["finetune_by_dataset.authors.max_train_examples=32", "export.int8=false"]
    write_params(repo, [*cheaper, "export.fp16=false"])
    third = sh(repo, "dvc", "repro", **env).stdout
    after = {"finetune@authors", "evaluate@authors", "export", "publish", "report", "gate"}
    after.add("study@authors-scratch")  # TINY's arm beside the product
    assert _ran(third) == after  # not validate, nor another dataset's stages

    metrics = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert "artifacts/eval/authors/metrics.json" in metrics and "accuracy" in metrics
    assert "artifacts/report/metrics.json" in metrics and "gain_pretraining" in metrics
    sh(repo, "dvc", "plots", "show", "-o", "plots_html")
    html = (repo / "plots_html" / "index.html").read_text()
    assert "confusion_matrix" in html and "pretrain loss" in html and "accuracy_tsv" in html

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "lr")
    exp = sh(repo, "dvc", "exp", "run", "-S", "gate.max_drop_vs_latest=99", **env).stdout
    assert _ran(exp) == {"gate", "publish"}


def _committed_stand_ins(repo: Path):
    """Every stage's outs as small stand-in files, recorded in dvc.lock by `dvc commit`:
    a workspace in which DVC finds every stage up to date, without running one."""
    from dvc.repo import Repo

    with Repo(repo) as r:
        for stage in r.index.stages:
            for out in stage.outs:
                path = Path(out.fs_path)
                if not path.suffix:  # a directory out
                    path = path / "stand-in"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(stage.name)
    sh(repo, "dvc", "commit", "--force")


def test_one_datasets_finetune_edit_reruns_only_its_stages(tmp_path):
    """After an edit to finetune_by_dataset.authors, DVC re-runs only authors' finetune,
    evaluate and study stages and the stages below them: not validate, nor another
    dataset's stages. A dataset without an entry fails with the file and key, at once."""
    import networkx as nx
    from dvc.repo import Repo

    from flows.pipeline import write_params

    repo = tmp_path / "repo"
    clone_repo(repo)
    _committed_stand_ins(repo)

    def stale() -> set[str]:
        return set(json.loads(sh(repo, "dvc", "status", "--json").stdout))

    assert stale() == set()
    write_params(repo, ["finetune_by_dataset.authors.max_train_examples=200"])
    with Repo(repo) as r:
        graph = r.index.graph  # edges point from a stage to the stages it depends on
    by_name = {s.name: s for s in graph}

    def and_below(names: set[str]) -> set[str]:
        return names | {s.name for n in names for s in nx.ancestors(graph, by_name[n])}

    arms = yaml.safe_load((repo / "params.yaml").read_text())["study"]["arms"]
    own = {"finetune@authors", "evaluate@authors", *(f"study@authors-{a}" for a in arms)}
    now = stale()
    assert "validate" not in now, sorted(now)
    assert and_below(now) == and_below(own), sorted(now)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    del params["finetune_by_dataset"]["snli"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "finetune@snli" in stale()  # DVC: the key is `deleted`
    p = sh(repo, "dvc", "repro", "finetune@snli", ok=False, PYTHONPATH=str(repo))
    assert p.returncode and "Running stage" not in p.stdout  # refused before its command
    assert "Parameters 'finetune_by_dataset.snli' are missing from 'params.yaml'" in p.stderr
    p = sh(repo, "genpt", "validate", ok=False, PYTHONPATH=str(repo))  # any genpt command
    assert p.returncode == 2
    assert "params.yaml: finetune_by_dataset.snli: missing" in p.stderr


@pytest.mark.slow
def test_stage_deps_follow_the_corpus_outside_data(tmp_path):
    """validate's and tokenize's corpus dep is `corpus.root`, not the literal data/corpus:
    after editing one corpus file outside data/, `dvc status` shows both changed; with
    the corpus untouched it shows neither; a corpus outside corpus.root is refused."""
    repo, books = tmp_path / "repo", tmp_path / "books"
    clone_repo(repo)
    books.mkdir()
    for f in ("alice.txt", "frankenstein.txt"):
        (books / f).write_text((ROOT / "data" / "corpus" / f).read_text()[:20_000])
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["paths"]["corpus"] = [f"{books}/*.txt"]
    params["tokenizer"]["vocab_size"] = 512
    params["datasets"] = {"authors": params["datasets"]["authors"]}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"PYTHONPATH": str(repo), "TQDM_DISABLE": "1"}

    p = sh(repo, "dvc", "repro", "validate", ok=False, **env)  # corpus.root: data/corpus
    assert p.returncode and "is outside corpus.root (data/corpus)" in p.stderr + p.stdout

    params["corpus"]["root"] = str(books)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "dvc", "repro", "tokenize", **env)

    def status() -> dict:
        return json.loads(sh(repo, "dvc", "status", "--json", "validate", "tokenize").stdout)

    assert status() == {}  # unchanged corpus: nothing to re-run
    with (books / "alice.txt").open("a") as f:
        f.write("\nOne more line of Alice.\n")
    changed = status()
    assert set(changed) == {"validate", "tokenize"}
    for stage in changed.values():
        assert {"changed deps": {str(books): "modified"}} in stage


def test_corpus_recipe_import_url_from_s3_and_push(weed, tmp_path):
    """docs/corpus.md's recipe: `dvc import-url s3://...` then `dvc push`; the corpus is
    DVC-tracked (git ignores it) and reads through paths.corpus."""
    import gzip

    from genpt.ingest.corpus import iter_documents
    from genpt.params import CorpusConfig
    from genpt.stack.storage import s3_client

    env = weed.env()
    client = s3_client(env["GENPT_S3_ENDPOINT_URL"], credentials=(weed.access_key, weed.secret_key))
    text = "It was the best of times, it was the worst of times.\n" * 50
    client.put_object(Bucket="genpt-dvc", Key="books/a.txt.gz", Body=gzip.compress(text.encode()))
    repo = _repo(tmp_path / "repo", weed, "recipe")
    (repo / "data").mkdir()
    sh(repo, "dvc", "import-url", "s3://genpt-dvc/books", "data/books", **env)
    assert "2 files pushed" in sh(repo, "dvc", "push").stdout  # the .dir entry and the file
    assert "/books" in (repo / "data" / ".gitignore").read_text()
    docs = list(iter_documents([f"{repo}/data/books/*.txt.gz"], CorpusConfig(root="data/books")))
    assert [d.text for d in docs] == [text]
