"""Stage `finetune`: the product on one labelled dataset, trained by the study's protocol
as its `full` arm (genpt/arms.py): L3 = L2 + lambda * L1 on the label pool without the
held-out report rows, the lr chosen and every run stopped early on tune splits. Writes the
first seed's model to finetune/NAME/ and the arm's figures to study/NAME/full.json."""

from __future__ import annotations

from genpt import artifacts
from genpt.arms import run_arm
from genpt.io import atomic_dir, live, log_to, write_json
from genpt.params import Params


def run(params: Params, name: str) -> dict:
    ds = params.dataset(name)
    arm = run_arm(params, name, "full")
    out, first = arm.result, arm.result["runs"][0]
    lv = live(artifacts.live_finetune(params, name))
    log = log_to(lv)
    for metrics, step in arm.history:
        log(metrics, step)
    lv.end()
    metrics = {
        f"tune/{ds.metric}": first["tune"],
        f"held_out/{ds.metric}": first["report"][ds.metric],
        **{k: first[k] for k in ("lr", "best_epoch", "epochs", "steps", "fit")},
    }
    with atomic_dir(artifacts.finetune(params, name)) as d:
        arm.model.cpu().save(
            d,
            extra={
                "labels": ds.labels,
                "dataset": name,
                "max_len": out["max_len"],
                "lm_coef": out["lm_coef"],
                "init": out["init"],
                **{k: first[k] for k in ("seed", "lr", "best_epoch", "fit")},
            },
        )
        arm.tokenizer.save_pretrained(str(d))
        write_json(d / artifacts.finetune_metrics.name, metrics)
    write_json(artifacts.study(params, name, "full"), out)
    return metrics
