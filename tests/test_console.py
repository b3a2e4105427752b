"""What `genpt pipeline` prints: a short summary, no known third-party noise, and a
failing stage's own error; everything else stays in the Prefect log (and `-v`)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest

from genpt import logs
from tests.conftest import ROOT, TINY, genpt_pipeline, workspace_copy

MAX_LINES = 60  # the whole console output of a default-shaped run
NOISE = re.compile(
    r"torchvision is not installed|The axis name|LeafSpec|pre-processing before quantization"
    r"|git add dvc\.lock|core\.autostage|dvc push|Starting temporary server"
)


@pytest.mark.slow
def test_default_pipeline_prints_a_short_summary_and_a_failing_stage_its_error(
    pipeline_run, tmp_path
):
    run = json.loads((pipeline_run / "console.json").read_text())  # `genpt pipeline -S TINY`
    console = (run["stdout"] + run["stderr"]).splitlines()
    assert run["returncode"] == 0, run["stderr"][-3000:]
    assert len(console) <= MAX_LINES, "\n".join(console)
    assert not [ln for ln in console if NOISE.search(ln)], "\n".join(console)
    out = run["stdout"]
    for line in (
        "stages: ",
        "pre-training: val loss",
        "datasets (metric × 100; held-out: the study's rows, mean ± std over seeds; full is",
        "gate: passed",
    ):
        assert line in out, out
    ws = workspace_copy(pipeline_run, tmp_path / "ws")
    n_stages = len(json.loads((ws / "artifacts" / "run.json").read_text())["stages"])
    assert f"stages: {n_stages} ran, 0 up to date" in out
    assert re.search(r"^  authors\s+accuracy\s+\d+\.\d", out, re.M), out  # a dataset row
    assert re.search(r"^published: \S+ \(local: no S3 endpoint configured", out, re.M), out
    assert (ws / "params.yaml").read_text() == (ROOT / "params.yaml").read_text()  # -S: this run

    # `genpt status` reads the same files; with the same params it prints the same summary
    sets = [x for o in TINY for x in ("-S", o)]
    st = subprocess.run(
        [sys.executable, "-m", "genpt.cli", "status", *sets],
        cwd=ws, env=dict(os.environ, PYTHONPATH=str(ws)), capture_output=True, text=True,
    )  # fmt: skip
    assert st.returncode == 0 and st.stdout.strip() == out.strip()

    # a bad label in a dev file: the first stage fails, and its error reaches the console
    dev = ws / "data/finetune/authors/dev.jsonl"
    rows = dev.read_text().splitlines()
    dev.write_text("\n".join([json.dumps(json.loads(rows[0]) | {"label": "nobody"}), *rows[1:]]))
    r = genpt_pipeline(ws, *sets)
    console = (r.stdout + r.stderr).splitlines()
    assert r.returncode == 1
    assert len(console) <= MAX_LINES, "\n".join(console)
    err = r.stderr
    assert "stage validate failed" in err and "authors/dev.jsonl" in err and "nobody" in err


@pytest.mark.slow
def test_a_no_op_pipeline_prints_its_stage_lines_and_summary_only(pipeline_run, tmp_path):
    """`genpt pipeline` again with nothing to do, several times (the temporary server's
    shutdown noise was intermittent): exactly one line per stage and the summary, no
    Traceback or ERROR from the server stopping while it still records the run."""
    ws = workspace_copy(pipeline_run, tmp_path / "ws")
    n_stages = len(json.loads((ws / "artifacts" / "run.json").read_text())["stages"])
    sets = [x for o in TINY for x in ("-S", o)]
    outs = []
    for i in range(5):
        r = genpt_pipeline(ws, *sets)
        outs.append(r.stdout)
        console = (r.stdout + r.stderr).splitlines()
        assert r.returncode == 0, r.stderr[-3000:]
        assert not [ln for ln in console if "Traceback" in ln or "ERROR" in ln], (i, r.stderr)
        err = r.stderr.splitlines()
        assert err[0].startswith("params for this run: ") and len(err) == 1 + n_stages, r.stderr
        assert all(re.fullmatch(r"\S+ +up to date +0\.0 s", ln) for ln in err[1:]), r.stderr
        assert r.stdout.startswith(f"stages: 0 ran, {n_stages} up to date"), r.stdout
    summary = subprocess.run(
        [sys.executable, "-m", "genpt.cli", "status", *sets],
        cwd=ws, env=dict(os.environ, PYTHONPATH=str(ws)), capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert outs == [summary] * len(outs)  # stdout: the summary, nothing else


def test_known_noise_is_silenced_and_other_warnings_are_not(monkeypatch):
    monkeypatch.delenv(logs.ENV, raising=False)
    logs.quiet_third_party()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        logs.quiet_third_party()  # after simplefilter: the filters go in front again
        warnings.warn(
            "# The axis name: batch will not be used, since ...", UserWarning, stacklevel=2
        )
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=2
        )
        warnings.warn("a real warning from our code", UserWarning, stacklevel=2)
    assert [str(w.message) for w in seen] == ["a real warning from our code"]

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    h = Keep()
    for name in ("", "torch.onnx._internal.exporter._registration"):
        logging.getLogger(name).addHandler(h)
    try:
        logging.getLogger("torch.onnx._internal.exporter._registration").warning(
            "torchvision is not installed. Skipping torchvision::nms"
        )
        logging.warning("Please consider pre-processing before quantization. See ...")
        logging.warning("a real root warning")
    finally:
        for name in ("", "torch.onnx._internal.exporter._registration"):
            logging.getLogger(name).removeHandler(h)
    assert records == ["a real root warning"]


def test_log_level_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(logs.ENV, "debug")
    assert logs.verbose()
    monkeypatch.setenv(logs.ENV, "warning")
    assert logs.level() == logging.WARNING and not logs.verbose()
    monkeypatch.setenv(logs.ENV, "loud")
    with pytest.raises(ValueError, match="GENPT_LOG_LEVEL='LOUD'"):
        logs.level()
