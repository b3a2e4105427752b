"""The model card (README.md) of a published bundle, and its plots as PNG images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from genpt import artifacts
from genpt.params import Params


def _tsv(path: Path) -> tuple[list[float], list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows]


def _curves(ax, series: dict[str, Path], ylabel: str) -> None:
    for label, path in series.items():
        if path.exists():
            ax.plot(*_tsv(path), label=label, marker="." if label != "train" else None)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def render_plots(params: Params, out: Path) -> dict[str, str]:
    """{title: relative png path} for the loss curves and confusion matrices that exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made = {}

    def save(fig, name: str, title: str) -> None:
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100, metadata={"Software": None})
        plt.close(fig)
        made[title] = f"{out.name}/{name}"

    m = artifacts.live_pretrain_plots(params)
    if (m / "train" / "loss.tsv").exists():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        _curves(ax, {"train": m / "train" / "loss.tsv", "val": m / "val" / "loss.tsv"}, "loss")
        save(fig, "pretrain_loss.png", "Pre-training loss (L1)")
    for name, ds in params.datasets.items():
        m = artifacts.live_finetune_plots(params, name)
        if (m / "train" / "loss.tsv").exists():
            fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
            _curves(a, {"train": m / "train" / "loss.tsv"}, "loss (L3)")
            _curves(b, {"dev": m / "dev" / f"{ds.metric}.tsv"}, f"dev {ds.metric}")
            save(fig, f"finetune_{name}.png", f"Fine-tuning on {name}")
        cm = artifacts.live_confusion(params, name)
        if cm.exists():
            fig, ax = plt.subplots(figsize=(4.5, 4))
            _confusion(ax, json.loads(cm.read_text()), ds.labels)
            save(fig, f"confusion_{name}.png", f"Confusion matrix, {name} dev")
    return made


def _confusion(ax, pairs: list[dict], labels: list[str] | None) -> None:
    import numpy as np

    names = labels or sorted({p["actual"] for p in pairs} | {p["predicted"] for p in pairs})
    idx = {n: i for i, n in enumerate(names)}
    counts = np.zeros((len(names), len(names)), dtype=int)
    for p in pairs:
        counts[idx[p["actual"]], idx[p["predicted"]]] += 1
    ax.imshow(counts, cmap="Blues")
    for (i, j), c in np.ndenumerate(counts):
        ax.text(j, i, str(c), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")


def _table(rows: dict[str, dict]) -> str:
    keys = sorted({k for r in rows.values() for k in r})
    lines = ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows.items():
        cells = [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gate_section(gate: dict) -> str:
    """The quality gate's verdict and figures (tasks/gate.py)."""
    if not gate.get("enabled", True):
        return "Quality gate: disabled (`gate.enabled: false`)."
    verdict = "passed" if gate["passed"] else "FAILED, published with --force"
    rows = [
        f"| {c['check']} | {c['dataset'] or 'all'} | {c['what']} "
        f"| {'–' if c['value'] is None else format(c['value'], '.2f')} "
        f"| {c['rule']} {c['threshold']} | {'yes' if c['passed'] else 'no'} |"
        for c in gate["checks"]
    ]
    head = "| check | dataset | figure | points | rule | passed |\n|---|---|---|---|---|---|"
    return f"Quality gate: **{verdict}**.\n\n" + head + "\n" + "\n".join(rows)


def how_to_use(name: str, version: str, fmt: str) -> str:
    """The card's `How to use` section: the bundle from onnxruntime, transformers.js, Triton."""
    if fmt != "onnx":
        return "## How to use\nHugging Face checkpoints: `transformers` `from_pretrained`.\n"
    return f"""## How to use
`genpt fetch DEST --version {version} -S publish.name={name}` (or `genpt predict/generate
--bundle s3://BUCKET/models/{name}/{version}`). In `DEST/onnx/`:
- **Python, onnxruntime**: each task model's `task.json` (`inputs`, `output`) and
  `tokenizer.json` (its template adds start/delim/extract) say how to build `input_ids` and
  `attention_mask`; `examples/onnx_client.py` in the genpt repository does it with
  onnxruntime, tokenizers and numpy only.
- **transformers.js**: `lm/` is in the Hugging Face ONNX layout (`config.json`,
  `onnx/model.onnx`, `onnx/model_quantized.onnx` = dtype `q8`, `onnx/model_fp16.onnx`);
  set `env.localModelPath` to `DEST/onnx/` and load `lm` with `AutoModelForCausalLM`.
- **Triton**: `genpt export --triton DIR` writes a model repository (platform
  `onnxruntime_onnx`) from the same graphs; the LM's client carries `present.*` back as
  `past_key_values.*`.
"""


def model_card(params: Params, name: str, version: str, fmt: str, metrics: dict,
               plots: dict[str, str], lineage: dict, report: str | None = None,
               gate: dict | None = None) -> str:  # fmt: skip
    """README.md: data, params, metrics, plots, intended use, limits, lineage."""
    m, tokens = params.model, metrics.get("tokens", {})
    datasets = "\n".join(
        f"- **{n}** ({d.task_type}, metric {d.metric}): train `{d.train}`, dev "
        + (f"`{d.dev}`" if d.dev else f"{d.holdout} held-out rows of train")
        + (f", labels {', '.join(d.labels)}" if d.labels else "")
        for n, d in params.datasets.items()
    )
    ev = metrics.get("eval", {})
    ft = {
        n: {k.removeprefix("dev/"): v for k, v in r.items()}
        for n, r in metrics.get("finetune", {}).items()
    }
    lm = {k: v for k, v in metrics.get("pretrain", {}).items() if k.startswith("val/")}
    images = "\n\n".join(f"![{t}]({p})" for t, p in plots.items())
    if fmt == "onnx":
        files = "`onnx/` (ONNX Runtime)"
    else:
        files = "`pretrain/` (the LM) and `finetune/NAME/` (task models) in Hugging Face format"
    pt, ftc = params.pretrain, params.finetune
    dirty = " (uncommitted changes)" if lineage.get("git_dirty") else ""
    stages = ", ".join(sorted(lineage.get("dvc_lock", {}))) or "no dvc.lock"
    return f"""# {name} {version}

GPT-1 style model (Radford et al. 2018): a decoder-only transformer pre-trained as a language
model on a small public-domain corpus, then fine-tuned per labelled dataset with
L3 = L2 + {params.finetune.lm_coef} * L1. Files: {files}; `tokenizer/` (byte-level BPE);
`metrics/`; `plots/`; `params.yaml` (every setting used); `manifest.json` (sha256 of every file
and the lineage below). Download and verify with
`genpt fetch DEST --version {version} -S publish.name={name}`.

## Data
- Pre-training corpus: {", ".join(f"`{f}`" for f in tokens.get("files") or params.paths.corpus)}
  ({tokens.get("train_tokens", "?")} train / {tokens.get("val_tokens", "?")} validation tokens,
  vocabulary {tokens.get("vocab_size", params.tokenizer.vocab_size)}).
{datasets or "- no fine-tuning datasets"}

## Parameters
- model: preset `{m.preset}`, arch `{m.arch}`, dropout {m.dropout}
- pre-training: {pt.steps} steps, batch {pt.batch_size}, lr {pt.lr}
- fine-tuning: the study's protocol (its `full` arm, first seed): lr chosen from
  {params.study.lrs} on a tune split, early stopping (patience {ftc.patience}, at most
  {ftc.epochs} epochs), lambda {ftc.lm_coef}, init `{ftc.init}`
- seed {params.seed}; the full set is in `params.yaml`.

## Metrics
Pre-training (validation):

{_table({f"LM, step {metrics.get('pretrain', {}).get('step')}": lm})}

Evaluation on the dev splits:

{_table(ev) if ev else "(none)"}

Fine-tuning (the product's run: tune and held-out scores, chosen lr, best epoch, epochs and
optimizer steps run, fit rows):

{_table(ft) if ft else "(none)"}

{images}

{report + chr(10) * 2 + "![Ablation](report/ablation.png)" + chr(10) * 2
 + "![Label efficiency](report/label_efficiency.png)" if report else "No ablation report."}

{gate_section(gate) if gate else ""}

{how_to_use(name, version, fmt)}
## Intended use
Research and teaching: a small, fully reproducible GPT-1 pipeline; text classification of
the configured datasets' kind of input; a starting point for fine-tuning on similar data.

## Limits
Small model and corpus (mostly 19th-century English fiction): poor general language
ability, no knowledge of modern text, style and topic biases of its sources; dev-set
scores above compare to the majority baseline and are not a guarantee on other data.
Not for decisions about people, safety-critical use or factual generation.

## Lineage
- git commit `{lineage.get("git_commit")}`{dirty}
- DVC stages (dvc.lock md5 of deps/outs in manifest.json): {stages}
"""
