"""Progress of a long loop: a tqdm bar in a terminal; elsewhere (CI, DVC under Prefect, a
log file) one plain line every `every_s` seconds and at the end, never a stream of
carriage-return updates. Same interface as tqdm's: update(n), set_postfix(**kw), close().
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


def _tty(file) -> bool:
    return hasattr(file, "isatty") and file.isatty() and os.environ.get("TQDM_DISABLE") != "1"


class PlainProgress:
    """`desc: 400/3000 (13%), loss=4.812, tok_s=4,380, 2 min 01 s, ~13 min left`."""

    def __init__(self, total: int, desc: str, initial: int = 0, every_s: float = 60.0,
                 file=None):  # fmt: skip
        self.total, self.desc, self.n, self.every_s = total, desc, initial, every_s
        self.file = file or sys.stderr
        self.start_n, self.t0 = initial, time.monotonic()
        self.last, self.postfix = self.t0, {}

    def set_postfix(self, **kw) -> None:
        self.postfix = kw

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.write(now)

    def write(self, now: float) -> None:
        elapsed = now - self.t0
        done = self.n - self.start_n
        left = elapsed / done * (self.total - self.n) if done else None
        parts = [f"{self.n}/{self.total} ({100 * self.n / max(1, self.total):.0f}%)"]
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        parts.append(duration(elapsed) + (f", ~{duration(left)} left" if left else ""))
        print(f"{self.desc}: " + ", ".join(parts), file=self.file, flush=True)

    def close(self) -> None:
        if self.n > self.start_n:
            self.write(time.monotonic())


def duration(seconds: float) -> str:
    """'4.2 s', '3 min 07 s' or '1 h 02 min': the one way genpt prints a duration."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class _Off:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def progress(total: int, desc: str, initial: int = 0, every_s: float = 60.0, file=None,
             enabled: bool = True):  # fmt: skip
    """A tqdm bar if `file` (default stderr) is a terminal, else a PlainProgress; nothing
    if not `enabled` (e.g. on every rank but 0)."""
    if not enabled:
        return _Off()
    file = file or sys.stderr
    if _tty(file):
        return tqdm(total=total, desc=desc, initial=initial, unit="step", mininterval=1.0,
                    file=file)  # fmt: skip
    return PlainProgress(total, desc, initial, every_s, file)
