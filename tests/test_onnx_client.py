"""examples/onnx_client.py, run where genpt cannot be imported, agrees with `genpt predict`."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "examples" / "onnx_client.py"
# -I -S: no PYTHONPATH, no user site, no .pth files (so not genpt's editable install);
# only the environment's site-packages directory itself is on the path.
BARE = [sys.executable, "-I", "-S", "-c"]
SITE = sysconfig.get_paths()["purelib"]


def _bare(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.append({SITE!r}); sys.argv = sys.argv[1:]; "
    return subprocess.run(
        [*BARE, prelude + code, *args], cwd=cwd, capture_output=True, text=True, env={}
    )


def test_genpt_is_not_importable_in_the_clients_interpreter(tmp_path):
    res = _bare("import numpy, onnxruntime, tokenizers; import model", cwd=tmp_path)
    assert "No module named 'model'" in res.stderr, res.stderr
    res = _bare("import tasks", cwd=tmp_path)
    assert "No module named 'tasks'" in res.stderr, res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["authors", "snli", "stsb", "arc"])
def test_client_equals_genpt_predict_on_dev(published, tiny_export, name, tmp_path):
    from genpt import serve
    from genpt.ingest.loaders import load_split

    rows = load_split(tiny_export.dataset(name), "dev")
    if name == "arc":
        assert len({len(r["choices"]) for r in rows}) > 1  # ragged choice counts
    inp = tmp_path / "rows.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ref_path = tmp_path / "genpt.jsonl"
    serve.predict(str(published), str(inp), str(ref_path), name, device="cpu")
    ref = [json.loads(line) for line in ref_path.read_text().splitlines()]

    t0 = time.perf_counter()
    run = "import runpy; runpy.run_path(sys.argv[0], run_name='__main__')"
    model_dir = str(published / "onnx" / name)
    res = _bare(run, str(CLIENT), model_dir, str(inp), "-o", "out.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "providers: ['CPUExecutionProvider']" in res.stderr
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    seconds = time.perf_counter() - t0

    assert len(got) == len(ref) == len(rows)

    def agree(a, b) -> bool:  # regression scores within float noise, else exactly
        return abs(a - b) <= 1e-5 if isinstance(b, float) else a == b

    same = sum(agree(g["prediction"], r["prediction"]) for g, r in zip(got, ref, strict=True))
    diff = 0.0
    for g, r in zip(got, ref, strict=True):
        if "logits" in r:
            n = len(g["logits"])
            assert all(v is None for v in r["logits"][n:])  # padded-out choices
            diff = max(diff, *(abs(a - b) for a, b in zip(g["logits"], r["logits"], strict=False)))
        else:
            diff = max(diff, abs(g["prediction"] - r["prediction"]))
    print(f"{name}: {same}/{len(rows)} same predictions, max |diff| {diff:.1e}, {seconds:.1f} s")
    assert same == len(rows) and diff <= 1e-5


@pytest.mark.slow
def test_tokenizer_template_gives_the_model_inputs(published):
    """tokenizer(text) / tokenizer(a, b) with the bundle's tokenizer.json = genpt's inputs."""
    from tokenizers import Tokenizer

    from model.inputs import encode_record
    from model.tokenizer import load_tokenizer

    cases = [
        ("authors", {"text": "It was night."}, ["It was night."]),
        (
            "snli",
            {"premise": "A dog runs.", "hypothesis": "It moves."},
            ["A dog runs.", "It moves."],
        ),
    ]
    for name, row, texts in cases:
        d = published / "onnx" / name
        meta = json.loads((d / "task.json").read_text())
        ref = encode_record(row, meta["task_type"], load_tokenizer(d), meta["max_len"])
        assert Tokenizer.from_file(str(d / "tokenizer.json")).encode(*texts).ids == ref[0]
