"""Stage `validate`, the pipeline's first: Great Expectations suites over the data
(genpt/ingest/validation.py).

Outputs under paths.artifacts: validate/summary.json (a DVC metric) and validate/docs/
(GX Data Docs HTML). Any failed expectation raises DataValidationError naming file,
rows and expectation.
"""

from __future__ import annotations

import time

from genpt import artifacts, offline
from genpt.ingest.validation import DataValidationError, validate
from genpt.io import atomic_dir, write_json
from genpt.params import Params

SECTIONS = ("validate", "paths", "corpus", "datasets")  # the params it reads
__all__ = ["DataValidationError", "run"]


def run(params: Params) -> dict:
    """Validate; write summary.json and Data Docs; raise DataValidationError on any failure."""
    offline.apply()  # GX analytics off, also when called as a library
    t0 = time.perf_counter()
    with atomic_dir(artifacts.validate(params)) as d:
        summary, failures = validate(
            params.validation,
            params.paths.corpus,
            params.datasets,
            d / artifacts.validate_docs.name,
            reader=params.corpus,
        )
        summary["success"] = not failures
        summary["failures"] = failures
        timing = {**summary.pop("timing_s"), "total": round(time.perf_counter() - t0, 2)}
        write_json(d / artifacts.validate_summary.name, summary)  # deterministic: stages use it
        write_json(d / artifacts.validate_timing.name, timing)
        summary["timing_s"] = timing
    if failures:
        raise DataValidationError(
            f"{len(failures)} expectation(s) failed (see {artifacts.validate(params)}):\n  "
            + "\n  ".join(failures)
        )
    return summary
