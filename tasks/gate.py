"""Stage `gate`: the quality gate (genpt/quality_gate.py) fails the run here, before
export and publish; writes gate/verdict.json."""

from __future__ import annotations

from genpt import artifacts, bundle
from genpt.io import write_json
from genpt.params import Params
from genpt.quality_gate import GateFailed, enforce

__all__ = ["GateFailed", "run"]


def run(params: Params) -> dict:
    """Stage `gate`: the verdict into gate/verdict.json; GateFailed if it fails."""
    try:
        v = enforce(params, bundle.registry_store(params.publish))
    except GateFailed as e:  # the failing verdict too lists every check
        write_json(artifacts.gate_verdict(params), e.verdict)
        raise
    write_json(artifacts.gate_verdict(params), v)
    return v
