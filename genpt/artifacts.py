"""Every artifact path of the pipeline, named once.

Paths are relative to params' `paths.artifacts`; `{name}` is a dataset, `{arm}` an arm of
`study.arms`. dvc.yaml spells the same paths in its outs and deps, and
tests/test_layout.py checks each of them against this module: a renamed output is one
edit here and one there, or the test fails. Use: `artifacts.eval_metrics(params, name)`;
`.name` is the file's own name (for writes into an atomic dir).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class At:
    """One artifact path under paths.artifacts."""

    def __init__(self, template: str):
        self.template = template

    @property
    def name(self) -> str:
        return PurePosixPath(self.template).name

    def __call__(self, params, name: str = "", arm: str = "") -> Path:
        return params.artifacts(*self.template.format(name=name, arm=arm).split("/"))

    def __repr__(self) -> str:
        return f"At({self.template!r})"


validate = At("validate")
validate_summary = At("validate/summary.json")
validate_timing = At("validate/timing.json")
validate_docs = At("validate/docs")
unlabeled = At("unlabeled")  # unlabeled in-domain text: {name}.txt per dataset
unlabeled_manifest = At("unlabeled/manifest.json")
tokenizer = At("tokenizer")
tokens = At("tokens")
tokens_manifest = At("tokens/manifest.json")
pretrain = At("pretrain")
pretrain_hf = At("pretrain/hf")
pretrain_ckpt = At("pretrain/ckpt.pt")  # the name model/pretrain.py writes (CKPT)
pretrain_fingerprint = At("pretrain/ckpt.json")
pretrain_metrics = At("pretrain/metrics.json")
finetunes = At("finetune")
finetune = At("finetune/{name}")
finetune_task = At("finetune/{name}/task.json")
finetune_metrics = At("finetune/{name}/metrics.json")
evals = At("eval")
eval_metrics = At("eval/{name}/metrics.json")
eval_predictions = At("eval/{name}/predictions.json")  # per dev row: gold, model, baseline
live = At("live")  # dvclive's logs and plots
live_pretrain = At("live/pretrain")
live_pretrain_plots = At("live/pretrain/plots/metrics")
live_finetune = At("live/finetune/{name}")
live_finetune_metrics = At("live/finetune/{name}/metrics.json")
live_finetune_plots = At("live/finetune/{name}/plots/metrics")
live_evaluate = At("live/evaluate/{name}")
live_confusion = At("live/evaluate/{name}/plots/sklearn/confusion_matrix.json")
studies = At("study")
study = At("study/{name}/{arm}.json")
report = At("report")
report_md = At("report/report.md")
report_table = At("report/table.json")
report_chart = At("report/ablation.png")
report_curve = At("report/label_efficiency.png")
report_metrics = At("report/metrics.json")
gate_verdict = At("gate/verdict.json")
export = At("export")
publish_receipt = At("publish/receipt.json")
run = At("run.json")  # the last `genpt pipeline` run's stages (not a DVC output)

PATHS = {k: v for k, v in dict(globals()).items() if isinstance(v, At)}
