"""How loud genpt is: quiet by default, full output with `genpt -v` or GENPT_LOG_LEVEL.

GENPT_LOG_LEVEL (DEBUG, INFO, WARNING; default INFO) is read by every process, so the
stages DVC starts inherit it. Below INFO (DEBUG, `-v`) nothing is filtered.

Known third-party noise is silenced where it is emitted, by exact message, so that a
real warning (ours or theirs) still shows:
- torch's ONNX exporter: "torchvision is not installed" (once per torchvision op it
  registers), axis-name renaming notes, the dynamic-axes and `LeafSpec` deprecations;
- ONNX Runtime's quantizer: "consider pre-processing before quantization" (our models
  are quantized dynamically, MatMul only, where that pre-processing does not apply).
DVC's "git add dvc.lock" hint is turned off where the flow calls DVC (flows/dvc_stage.py).
"""

from __future__ import annotations

import logging
import os
import re
import warnings

ENV = "GENPT_LOG_LEVEL"

NOISE_WARNINGS = [  # (message regex, category) of Python warnings
    (r"# The axis name: .* will not be used", UserWarning),
    (r"from_dynamic_axes_to_dynamic_shapes is deprecated", DeprecationWarning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
]
NOISE_LOGS = {  # logger name -> message regex of log records
    "torch.onnx._internal.exporter._registration": r"torchvision is not installed",
    "": r"Please consider (to run )?pre-processing before quantization",  # root logger
}


def level() -> int:
    """The level GENPT_LOG_LEVEL names (default INFO); a bad name is an error."""
    name = os.environ.get(ENV, "INFO").strip().upper()
    value = logging.getLevelName(name)
    if not isinstance(value, int):
        raise ValueError(f"{ENV}={name!r}: use DEBUG, INFO, WARNING or ERROR")
    return value


def verbose() -> bool:
    return level() <= logging.DEBUG


class _Drop(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_third_party() -> None:
    """Silence the known noise listed above (nothing when verbose)."""
    if verbose():
        return
    for pattern, category in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name, pattern in NOISE_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_Drop(pattern))


class _Not(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(self.prefix)


def console_without(prefix: str) -> None:
    """Keep the loggers named `prefix*` off the root logger's console handlers (their own
    handlers, e.g. Prefect's API log, still get every record)."""
    for h in logging.getLogger().handlers:
        if not any(isinstance(f, _Not) and f.prefix == prefix for f in h.filters):
            h.addFilter(_Not(prefix))
