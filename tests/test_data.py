"""data/build_default.py rebuilds data/ byte for byte from ../shared/data."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def digests(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for d in ("corpus", "finetune")
        for f in sorted((root / d).rglob("*"))
        if f.is_file()
    }


def test_build_default_rebuilds_data_byte_for_byte(shared_data, tmp_path):
    out = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "data" / "build_default.py"), "--shared", str(shared_data),
         "--out", str(out)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    committed = digests(ROOT / "data")
    assert len(committed) == 15  # 5 corpus files, train and dev of 5 datasets
    assert digests(out) == committed
