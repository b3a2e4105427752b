"""Progress output: a bar only in a terminal; plain, periodic lines in logs."""

from __future__ import annotations

import io

from model.progress import PlainProgress, progress


def test_plain_lines_when_not_a_terminal(monkeypatch):
    out = io.StringIO()  # not a TTY, like a CI log or a Prefect worker's
    p = progress(100, "pretrain", every_s=0.0, file=out)
    assert isinstance(p, PlainProgress)
    p.set_postfix(loss="4.812")
    p.update(25)
    p.update(25)
    p.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("pretrain: 25/100 (25%), loss=4.812, ")
    assert lines[1].startswith("pretrain: 50/100 (50%)") and "left" in lines[1]
    assert len(lines) == 3  # one per update (every_s=0) and one at the end


def test_lines_are_periodic_not_per_step():
    out = io.StringIO()
    p = PlainProgress(10_000, "finetune", every_s=3600, file=out)
    for _ in range(10_000):
        p.update()
    assert out.getvalue() == ""  # under an hour: nothing until close
    p.close()
    assert out.getvalue().startswith("finetune: 10000/10000 (100%)")


def test_a_terminal_gets_a_bar(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    bar = progress(10, "pretrain", file=Tty())
    assert not isinstance(bar, PlainProgress)
    bar.close()
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert isinstance(progress(10, "pretrain", file=Tty()), PlainProgress)


def test_disabled_prints_nothing():
    out = io.StringIO()
    p = progress(10, "pretrain", every_s=0.0, file=out, enabled=False)
    p.set_postfix(loss="1.0")
    p.update(10)
    p.close()
    assert out.getvalue() == ""
