"""Stage `study@DATASET-ARM`: one arm of the ablation (GPT-1 Table 5) on one dataset,
over every seed of `study.seeds` (genpt/arms.py); writes study/DATASET/ARM.json."""

from __future__ import annotations

from genpt import artifacts
from genpt.arms import study_arm
from genpt.io import write_json
from genpt.params import Params


def run(params: Params, name: str, arm_name: str) -> dict:
    out = study_arm(params, name, arm_name)
    write_json(artifacts.study(params, name, arm_name), out)
    return out
