"""The damaged-artifact catalog: a damaged artifact that a stage reads, or a vocabulary the
corpus cannot fill, fails through the real `genpt` command with exit 2 and one line (the
path, what is wrong, what to do), no traceback, and nothing written (genpt/artifacts_check.py).

`python tests/test_damaged_artifacts.py` prints the catalog as a table (case, command,
exit code, last line of stderr) for the code that PYTHONPATH points at.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = "data/corpus/alice.txt"
TRAIN = ("finetune", "authors")


def genpt(art: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed `genpt` on a tiny run whose outputs are under `art`."""
    over = [
        f"paths.artifacts={art}",
        f"paths.corpus=[{CORPUS}]",
        "model.preset=tiny",
        "model.n_layer=null",
        "model.n_embd=null",
        "tokenizer.vocab_size=1024",
        "pretrain.steps=4",
        "pretrain.batch_size=4",
        "pretrain.warmup_steps=2",
        "pretrain.eval_batches=1",
        "finetune.epochs=1",
        "finetune_by_dataset.authors.max_train_examples=16",
        "study.seeds=[1]",
        "study.lrs=[1.0e-3]",
    ]
    flags, cmd = [a for a in args if a == "-v"], [a for a in args if a != "-v"]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(ROOT)}
    return subprocess.run(  # the case's own -S after these, so that it wins
        [str(Path(sys.executable).with_name("genpt")), *flags, cmd[0]]
        + [x for o in over for x in ("-S", o)]
        + cmd[1:],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def build(art: Path) -> None:
    """Tokenize, pre-train (with a checkpoint and its ckpt.json) and fine-tune `authors`."""
    for cmd in (["tokenize"], ["pretrain", "--auto-resume"], list(TRAIN)):
        r = genpt(art, *cmd)
        assert r.returncode == 0, r.stderr


def snapshot(art: Path) -> dict[str, str]:
    """Every file under art (hidden ones too) and its sha256."""
    return {
        str(p.relative_to(art)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(art.rglob("*"))
        if p.is_file()
    }


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def flip_last_token(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # a uint16 token id, one bit off: the size still matches
    path.write_bytes(bytes(data))


@dataclass
class Case:
    id: str
    target: str  # the path the message names (under artifacts/, or the corpus)
    damage: object  # callable(Path) or None
    commands: tuple[tuple[str, ...], ...]
    says: tuple[str, ...]  # what is wrong and what to do


CASES = [
    Case(
        "truncated checkpoint",
        "pretrain/ckpt.pt",
        lambda p: truncate(p, p.stat().st_size // 2),
        (("pretrain", "--resume"), ("pretrain", "--auto-resume")),
        ("damaged checkpoint", "delete it (or run without --resume) to start over"),
    ),
    Case(
        "shard 3 bytes short",
        "tokens/train-00000.bin",
        lambda p: truncate(p, p.stat().st_size - 3),
        (("pretrain",),),
        ("bytes, but the manifest's", "re-run `genpt tokenize`"),
    ),
    Case(
        "shard sha256 differs",
        "tokens/val-00000.bin",
        flip_last_token,
        (("pretrain",),),
        ("sha256 differs from tokens/manifest.json's", "re-run `genpt tokenize`"),
    ),
    Case(
        "tokenizer.json cut in half",
        "tokenizer/tokenizer.json",
        lambda p: truncate(p, p.stat().st_size // 2),
        (("pretrain",), (*TRAIN, "--init", "scratch")),
        ("truncated or not a tokenizer", "re-run `genpt tokenize`"),
    ),
    Case(
        "pre-trained LM weights truncated",
        "pretrain/hf/model.safetensors",
        lambda p: truncate(p, p.stat().st_size - 100),
        (TRAIN, ("generate", "To be", "--max-new-tokens", "2"), ("export",)),
        ("damaged weights", "re-run `genpt pretrain`"),
    ),
    Case(
        "fine-tuned model without weights",
        "finetune/authors/model.safetensors",
        Path.unlink,
        (("evaluate", "authors"), ("export", "authors")),
        ("missing", "re-run `genpt finetune authors`"),
    ),
    Case(
        "vocab far above the corpus",
        CORPUS,
        None,
        (("tokenize", "-S", "tokenizer.vocab_size=100000"),),
        ("tokenizer.vocab_size=100000, but BPE on", "set tokenizer.vocab_size to"),
    ),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    art = tmp_path_factory.mktemp("damaged") / "artifacts"
    build(art)
    return art


def damaged_copy(built: Path, dst: Path, case: Case) -> Path:
    shutil.copytree(built, dst)
    if case.damage:
        case.damage(dst / case.target)
    return dst / case.target if case.damage else Path(case.target)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_artifact_is_one_line_and_exit_2(built, tmp_path, case):
    art = tmp_path / "artifacts"
    target = damaged_copy(built, art, case)
    before = snapshot(art)
    for cmd in case.commands:
        r = genpt(art, *cmd)
        assert r.returncode == 2, (cmd, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        line = r.stderr.strip()
        assert line.startswith(f"error: {target}: ") or (
            case.damage is None and str(target) in line
        ), line
        for s in case.says:
            assert s in line, line
        assert snapshot(art) == before, f"{cmd} wrote into {art}"


def test_verbose_adds_the_cause(built, tmp_path):
    art = tmp_path / "artifacts"
    damaged_copy(built, art, CASES[0])
    r = genpt(art, "-v", "pretrain", "--resume")
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {art / CASES[0].target}: ")


# --- in-process: what the catalog cannot reach cheaply -----------------------------------


def test_a_flipped_bit_inside_a_checkpoint_fails_its_crc(tmp_path):
    import torch

    from genpt.artifacts_check import CKPT_KEYS, DamagedArtifact, checkpoint

    ckpt = tmp_path / "ckpt.pt"
    torch.save({**dict.fromkeys(CKPT_KEYS), "model": torch.full((1000,), 7.0)}, ckpt)
    assert checkpoint(ckpt)["model"].sum() == 7000
    data = bytearray(ckpt.read_bytes())
    data[data.index(torch.tensor([7.0]).numpy().tobytes() * 4) + 1] ^= 0x10
    ckpt.write_bytes(bytes(data))  # same size, the zip directory intact
    with pytest.raises(DamagedArtifact, match=r"ckpt.pt: damaged checkpoint: record .* CRC"):
        checkpoint(ckpt)


def test_the_committed_checkpoint_in_dvc_cache_is_offered(tmp_path, monkeypatch):
    """When DVC's cache holds the committed version, the message offers `dvc checkout`,
    and that command does restore a checkpoint that passes the check."""
    import torch

    from genpt.artifacts_check import CKPT_KEYS, DamagedArtifact, checkpoint

    dvc = [str(Path(sys.executable).with_name("dvc")), "-q"]
    monkeypatch.chdir(tmp_path)
    subprocess.run([*dvc, "init", "--no-scm"], check=True)
    ckpt = tmp_path / "art" / "ckpt.pt"
    ckpt.parent.mkdir()
    torch.save({**dict.fromkeys(CKPT_KEYS), "step": 3}, ckpt)
    subprocess.run([*dvc, "add", "art/ckpt.pt"], check=True)
    truncate(ckpt, ckpt.stat().st_size - 10)
    offer = "or `dvc checkout art/ckpt.pt` restores the committed one from the cache"
    with pytest.raises(DamagedArtifact, match=f"start over, {offer}"):
        checkpoint(ckpt)
    subprocess.run([*dvc, "checkout", "--force", "art/ckpt.pt"], check=True)
    assert checkpoint(ckpt)["step"] == 3


def test_bpe_may_stop_at_most_10_percent_short(caplog):
    from genpt.artifacts_check import trained_vocab
    from genpt.errors import GenptError
    from model.config import TokenizerConfig

    cfg = TokenizerConfig(vocab_size=300)
    trained_vocab(300, cfg, ["c.txt"])
    assert not caplog.records
    trained_vocab(270, cfg, ["c.txt"])  # the model is built for 270: said, not refused
    assert "tokenizer.vocab_size=300, but BPE on c.txt stops at 270 tokens" in caplog.text
    with pytest.raises(GenptError, match="stops at 269 tokens .* more than 10% short"):
        trained_vocab(269, cfg, ["c.txt"])


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp, "built"))
        print("| case | command | exit | stderr lines | artifacts changed | last line |")
        print("|---|---|---|---|---|---|")
        for i, case in enumerate(CASES):
            for j, cmd in enumerate(case.commands):
                art = Path(tmp, f"{i}.{j}")
                damaged_copy(Path(tmp, "built"), art, case)
                before = snapshot(art)
                r = genpt(art, *cmd)
                lines = r.stderr.strip().splitlines() or [""]
                last = lines[-1].replace(str(art), "artifacts")
                changed = "yes" if snapshot(art) != before else "no"
                row = [case.id, f"`genpt {' '.join(cmd)}`", r.returncode, len(lines), changed]
                print("| " + " | ".join(map(str, row)) + f" | `{last}` |")
