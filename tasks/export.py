"""Stage `export`: ONNX models of every fine-tuned task model and of the LM, checked
against PyTorch, into export/ (a bundle for `genpt publish`; genpt/onnx_models.py)."""

from __future__ import annotations

from pathlib import Path

from genpt import artifacts, artifacts_check
from genpt.bundle import write_manifest
from genpt.ingest.corpus import first_document
from genpt.io import atomic_dir
from genpt.onnx_models import export_lm_dir, export_task, sample_records
from genpt.params import Params
from model.task_model import HEAD_FILE, TASK_FILE

SECTIONS = ("export", "paths", "corpus", "datasets")  # the params it reads


def _names(params: Params) -> list[str]:
    names = params.export.datasets
    if names is None:
        return [n for n in params.datasets if (artifacts.finetune_task(params, n)).exists()]
    for n in names:
        params.dataset(n)
        if not artifacts.finetune_task(params, n).exists():
            raise FileNotFoundError(
                f"{artifacts.finetune(params, n)}: no fine-tuned model (run `genpt finetune {n}`)"
            )
    return names


def run(params: Params, triton: str | Path | None = None) -> dict:
    cfg = params.export
    names = _names(params)
    lm_src = artifacts.pretrain_hf(params)
    if cfg.lm and not (lm_src / "config.json").exists():
        raise FileNotFoundError(f"{lm_src}: no pre-trained model (run `genpt pretrain`)")
    if not names and not cfg.lm:
        raise FileNotFoundError("nothing to export: no fine-tuned models and export.lm is false")
    for n in names:  # damaged inputs fail here, in one line, before any export starts
        fix = f"re-run `genpt finetune {n}`"
        artifacts_check.hf_model(artifacts.finetune(params, n), fix, also=(TASK_FILE, HEAD_FILE))
    if cfg.lm:
        artifacts_check.hf_model(lm_src, artifacts_check.PRETRAIN)
    records = {n: sample_records(params, n) for n in names}  # bad data fails before exporting
    summary = {}
    with atomic_dir(artifacts.export(params)) as d:
        for n in names:
            summary[n] = export_task(artifacts.finetune(params, n), d / n, cfg, records[n])
        if cfg.lm:
            prompt = first_document(params.paths.corpus, params.corpus)[:2000]
            summary["lm"] = export_lm_dir(lm_src, d / "lm", cfg, prompt)
        write_manifest(d, format="onnx")
    if triton:
        from genpt.triton import write_triton

        write_triton(artifacts.export(params), Path(triton), cfg.triton_max_batch_size)
    return {k: {"variants": v["variants"], "parity": v["parity"]} for k, v in summary.items()}
