"""Stage `report`: the ablation (GPT-1 Table 5) from study/DATASET/ARM.json into report/:
metrics.json, table.json, report.md, ablation.png and label_efficiency.png
(genpt/ablation_report.py)."""

from __future__ import annotations

from genpt import artifacts
from genpt.ablation_report import (
    bar_chart,
    efficiency_chart,
    load_study,
    markdown,
    summarize_study,
    table_rows,
)
from genpt.io import atomic_dir, write_json
from genpt.params import Params


def run(params: Params) -> dict:
    summary = summarize_study(load_study(params), claim=params.gate.claim)
    text = markdown(summary, params)
    with atomic_dir(artifacts.report(params)) as d:
        write_json(d / artifacts.report_metrics.name, summary)
        write_json(d / artifacts.report_table.name, table_rows(summary))
        (d / artifacts.report_md.name).write_text(text + "\n", encoding="utf-8")
        bar_chart(summary, d / artifacts.report_chart.name)
        efficiency_chart(summary, d / artifacts.report_curve.name)
    return {**summary, "markdown": text}
