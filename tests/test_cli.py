"""The genpt command line, end to end on the default data with the tiny preset."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY, workspace_copy


def genpt(*args, check=True, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "genpt.cli", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        check=check,
    )


def commands() -> dict[str, object]:
    """Every command of the typer app, by its path ("validate", "stack up", ...)."""
    import typer

    from genpt.cli import app

    out, todo = {}, [((), typer.main.get_command(app))]
    while todo:
        path, group = todo.pop()
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                todo.append(((*path, name), cmd))
            else:
                out[" ".join((*path, name))] = cmd
    return out


def test_help_lists_and_explains_every_command():
    from typer.testing import CliRunner

    from genpt.cli import app

    cmds = commands()
    assert {"validate", "pipeline", "predict", "stack up", "stack status"} <= set(cmds)
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], terminal_width=200)
    assert top.exit_code == 0, top.output
    for path, cmd in sorted(cmds.items()):
        assert path.split()[0] in top.output, path
        res = runner.invoke(app, [*path.split(), "--help"], terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        summary = (cmd.help or "").strip().splitlines()[0]
        assert summary and summary in " ".join(res.output.split()), (path, summary)
        shown = (p for p in cmd.params if not getattr(p, "hidden", False))  # not internal flags
        for opt in (o for p in shown for o in p.opts if o.startswith("--")):
            assert opt in res.output, (path, opt)
        if "params" in {p.name for p in cmd.params}:
            assert "--params" in res.output and "--set" in res.output, path
    assert "--resume" in genpt("pretrain", "--help").stdout  # and through the real entry point
    assert "scratch" in runner.invoke(app, ["finetune", "--help"]).output


def test_bad_params_fail_fast_with_the_key(tmp_path):
    r = genpt("tokenize", "-S", "tokenizer.vocab_sise=10", check=False)
    assert r.returncode == 2
    assert "tokenizer.vocab_sise: unknown key" in r.stderr
    r = genpt("finetune", "nope", "-S", f"paths.artifacts={tmp_path}", check=False)
    assert r.returncode == 2 and "unknown dataset 'nope'" in r.stderr


@pytest.mark.slow
def test_stages_then_generate(pipeline_run, tmp_path):
    """The stage commands on a copy of the tiny pipeline's workspace (pipeline_run ran
    `genpt validate`, `tokenize`, `pretrain`, `finetune`, `evaluate` ... as dvc.yaml's
    commands): evaluate's JSON again, then generation from the pre-trained LM."""
    ws = workspace_copy(pipeline_run, tmp_path / "ws")
    sets = [x for o in TINY for x in ("-S", o)]
    art = ws / "artifacts"
    for path in (
        "tokenizer/tokenizer.json",
        "tokens/manifest.json",
        "pretrain/hf/config.json",
        "finetune/authors/head.safetensors",
    ):
        assert (art / path).exists(), path
    (art / "eval/authors/metrics.json").unlink()
    out = json.loads(genpt("evaluate", "authors", *sets, cwd=ws).stdout)
    assert out["authors"]["examples"] > 0 and (art / "eval/authors/metrics.json").exists()
    a = genpt("generate", "To be", "--greedy", "--max-new-tokens", "12", *sets, cwd=ws).stdout
    b = genpt(
        "generate", "To be", "--greedy", "--max-new-tokens", "12", "--no-cache", *sets, cwd=ws
    ).stdout
    assert a == b == greedy_reference(art / "pretrain" / "hf", "To be", 12) + "\n"
    sample = ("generate", "To be", "--top-k", "20", "--top-p", "0.9", "--seed", "3", *sets)
    assert genpt(*sample, cwd=ws).stdout == genpt(*sample, cwd=ws).stdout


def greedy_reference(src, prompt: str, n: int) -> str:
    """Greedy decoding by hand: argmax of the full forward pass, token by token."""
    import torch
    from transformers import AutoModelForCausalLM

    from model.tokenizer import EOT, load_tokenizer

    tok, lm = load_tokenizer(src), AutoModelForCausalLM.from_pretrained(str(src)).eval()
    ids, new = tok(prompt, add_special_tokens=False)["input_ids"], []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(lm(torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tok.convert_tokens_to_ids(EOT):
                break
            new.append(nxt)
    return tok.decode(new, skip_special_tokens=True)
