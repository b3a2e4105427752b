"""The ablation study in the shape of GPT-1's Table 5 (stage `report` writes it).

From study/DATASET/ARM.json, report/ gets:
- metrics.json: per dataset, each arm's mean ± std over seeds, the trivial baseline, the
  gains of pre-training (full - scratch) and of the auxiliary LM (full - no_aux) with 95%
  intervals (paired bootstrap over the held-out rows plus the seeds' variance), each
  arm's tuning, zero-shot scores; and the average over datasets (DVC metrics);
- report.md: the table; table.json: its rows (a Prefect table artifact); ablation.png.
Scores are points on each dataset's held-out split (genpt/arms.py): metric x 100.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genpt import artifacts
from genpt.params import Params
from model import bootstrap
from model.ablation import CLAIMS, across_datasets, format_gain, labels_needed, summarize
from model.ablation import average as average_of

# GPT-1 (Radford et al. 2018), Table 5: dataset -> (full, w/o pre-training, w/o aux LM)
PAPER = {
    "cola": (45.4, 18.9, 47.9),
    "sst2": (91.3, 84.0, 92.0),
    "mrpc": (82.3, 79.4, 84.9),
    "stsb": (82.0, 30.9, 83.2),
    "qqp": (70.3, 65.5, 69.8),
    "mnli": (81.8, 75.7, 81.1),
    "qnli": (88.1, 71.2, 86.9),
    "rte": (56.0, 53.8, 54.4),
}
PAPER_AVERAGE = (74.7, 59.9, 75.0)
GAINS = {"gain_pretraining": ("full", "scratch"), "gain_aux_lm": ("full", "no_aux")}
LABELS = {
    "full": "Transformer w/ aux LM (full)",
    "scratch": "Transformer w/o pre-training",
    "no_aux": "Transformer w/o aux LM",
}


def paper_key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum()).removeprefix("glue")


def points(study: dict) -> list[float]:
    return [100 * r["report"][study["metric"]] for r in study["runs"]]


def gain(a: dict, b: dict, level: float) -> dict:
    """Arm a - arm b on the held-out rows both scored (model/bootstrap.py)."""
    preds = [[np.asarray(r["pred"]) for r in s["runs"]] for s in (a, b)]
    return bootstrap.gain(a["metric"], np.asarray(a["gold"]), *preds, level=level)


def _dropped(dropped: dict | None) -> str:
    """', N more left out as not clean (why: count, ...)' for the split's description."""
    if not dropped:
        return ""
    why = ", ".join(f"{k}: {v}" for k, v in dropped.items())
    return f", {sum(dropped.values())} more left out as not clean ({why})"


def _mean_std(values: list[float]) -> dict:
    s = summarize(values)
    return {"mean": s["mean"], "std": s["std"], "n": s["n"]}


def load_study(params: Params) -> dict[str, dict[str, dict]]:
    """{dataset: {arm: study json}}; a missing file names the stage that writes it."""
    out = {}
    for name in params.datasets:
        out[name] = {}
        for arm in params.study.all_arms():
            path = artifacts.study(params, name, arm)
            if not path.exists():
                run = f"genpt finetune {name}" if arm == "full" else f"genpt study {name} {arm}"
                raise FileNotFoundError(f"{path}: missing (run `{run}`)")
            out[name][arm] = json.loads(path.read_text())
    return out


def tuning(arms: dict[str, dict]) -> dict[str, dict]:
    """Per arm: the lr chosen on the tune split from the grid searched there, and per seed
    the best epoch, the epochs and optimizer steps run; `flags` where the lr sits on the
    edge of the grid (the optimum may lie outside it) or a run stopped at the epoch cap
    (its best epoch its last: it was still learning)."""
    out = {}
    for arm, s in arms.items():
        lr, grid, runs = s["lr"], s["grid"], s["runs"]
        flags = []
        if len(grid["lrs"]) > 1 and lr in (min(grid["lrs"]), max(grid["lrs"])):
            edge = "low" if lr == min(grid["lrs"]) else "high"
            flags.append(f"lr {lr:g} on the {edge} edge of {sorted(grid['lrs'])}")
        capped = sum(r["best_epoch"] == r["epochs"] for r in runs)
        if capped:
            flags.append(f"best epoch = its last (the cap, {grid['max_epochs']}) in {capped} "
                         f"of {len(runs)} runs: still learning")  # fmt: skip
        curves = {f"lr {r['lr']:g}": r["tune_curve"] for r in s["search"]}
        out[arm] = {"lr": lr, "grid": grid, "best_epochs": [r["best_epoch"] for r in runs],
                    "epochs_run": [r["epochs"] for r in runs],
                    "steps": [r["steps"] for r in runs], "tune_curves": curves,
                    "flags": flags}  # fmt: skip
    return out


CLAIM_WORDS = {
    "pooled": "on these datasets (rows and seeds as the noise)",
    "datasets": "with datasets as the unit (a claim about tasks like these)",
}


def primary(average: dict, claim: str) -> dict | None:
    """The interval of the gain of pre-training that the claim (gate.claim) reads."""
    return average.get(CLAIMS[claim])


def efficiency(arms: dict[str, dict]) -> dict | None:
    """The label-efficiency curve of `full` and `scratch` (study.curve beside the dataset's
    own budget): each arm's mean ± std at each budget, and per budget N the labels scratch
    needs to reach what full reaches with N ("labels saved": needs - N; None: more than the
    curve's largest budget). None without a curve."""
    if not all(a in arms and arms[a].get("curve") for a in ("full", "scratch")):
        return None
    out = {}
    for a in ("full", "scratch"):
        s, by = arms[a], {}
        own = s["examples"]["fit"] + s["examples"]["tune"]
        for r in s["runs"]:
            by.setdefault(own, []).append(100 * r["report"][s["metric"]])
        for r in s["curve"]:
            size = min(r["budget"], s["examples"]["pool"])
            by.setdefault(size, []).append(100 * r["report"][s["metric"]])
        out[a] = {n: _mean_std(v) for n, v in sorted(by.items())}
    budgets = sorted(set(out["full"]) & set(out["scratch"]))
    means = [out["scratch"][n]["mean"] for n in budgets]
    saved = {}
    for n in budgets:
        need = labels_needed(budgets, means, out["full"][n]["mean"])
        saved[n] = {"scratch_needs": need, "saved": None if need is None else need - n}
    return {"budgets": budgets, "arms": out, "labels_saved": saved}


def summarize_study(
    study: dict[str, dict[str, dict]], level: float = 0.95, claim: str = "datasets"
) -> dict:
    """The report's figures from {dataset: {arm: study json}} (see the module doc); `claim`:
    which interval of the average gain of pre-training is primary (gate.claim)."""
    datasets = {}
    for name, arms in study.items():
        first = next(iter(arms.values()))
        scores = {arm: points(s) for arm, s in arms.items()}
        d = {
            "metric": first["metric"],
            "split": f"held out: {first['examples']['report']} train rows"
            + _dropped(first["examples"].get("dropped")),
            "baseline": 100 * first["baseline"],
            "arms": {arm: _mean_std(x) for arm, x in scores.items()},
            "tuning": tuning(arms),
        }
        for key, (a, b) in GAINS.items():
            if a in arms and b in arms:
                d[key] = gain(arms[a], arms[b], level)
        if curve := efficiency(arms):
            d["label_efficiency"] = curve
        if "zero_shot" in arms.get("full", {}):
            d["zero_shot"] = 100 * arms["full"]["zero_shot"]["accuracy"]
        if paper_key(name) in PAPER:
            d["paper"] = dict(
                zip(("full", "scratch", "no_aux"), PAPER[paper_key(name)], strict=True)
            )
        datasets[name] = d
    arms = list(next(iter(study.values()))) if study else []
    average = {
        "arms": {
            a: sum(d["arms"][a]["mean"] for d in datasets.values()) / len(datasets) for a in arms
        },
        "baseline": sum(d["baseline"] for d in datasets.values()) / max(1, len(datasets)),
        "paper": dict(zip(("full", "scratch", "no_aux"), PAPER_AVERAGE, strict=True)),
    }
    for key, (a, b) in GAINS.items():
        if a in arms and b in arms:
            average[key] = average_of([d[key] for d in datasets.values()], level)
            by_dataset = {n: d[key]["mean"] for n, d in datasets.items()}
            average[f"{key}_across_datasets"] = across_datasets(by_dataset, level)
    average["claim"] = claim
    # accuracy-like and correlation metrics have different chance levels: averaged apart
    average["by_metric"] = {
        m: {
            **{a: sum(d["arms"][a]["mean"] for d in group) / len(group) for a in arms},
            **{k: float(np.mean([d[k]["mean"] for d in group])) for k in GAINS if k in group[0]},
        }
        for m in sorted({d["metric"] for d in datasets.values()})
        for group in [[d for d in datasets.values() if d["metric"] == m]]
    }
    return {"datasets": datasets, "average": average}


def table_rows(summary: dict) -> list[dict]:
    """One row per method, one column per dataset plus the average (as in Table 5)."""
    ds, avg = summary["datasets"], summary["average"]
    cols = {name: f"{name} ({d['metric']})" for name, d in ds.items()}
    rows = []
    for arm in avg["arms"]:
        row = {"method": LABELS.get(arm, arm), "avg": f"{avg['arms'][arm]:.1f}"}
        for name, d in ds.items():
            a = d["arms"][arm]
            spread = f" ± {a['std']:.1f}" if a["n"] > 1 else ""  # one seed: no spread to show
            row[cols[name]] = f"{a['mean']:.1f}{spread}"
        rows.append(row)
    rows.append(
        {
            "method": "trivial baseline (majority class / constant)",
            "avg": f"{avg['baseline']:.1f}",
            **{cols[n]: f"{d['baseline']:.1f}" for n, d in ds.items()},
        }
    )
    if any("zero_shot" in d for d in ds.values()):
        rows.append(
            {
                "method": "zero-shot pre-trained LM (no fine-tuning)",
                "avg": "–",
                **{
                    cols[n]: f"{d['zero_shot']:.1f}" if "zero_shot" in d else "–"
                    for n, d in ds.items()
                },
            }
        )
    for key, label in (
        ("gain_pretraining", "gain of pre-training (full − scratch), 95% CI"),
        ("gain_aux_lm", "gain of aux LM (full − no_aux), 95% CI"),
    ):
        if key in avg:
            rows.append(
                {
                    "method": label,
                    "avg": format_gain(avg[key]),
                    **{cols[n]: format_gain(d.get(key)) for n, d in ds.items()},
                }
            )
    return rows


def markdown(summary: dict, params: Params) -> str:
    rows = table_rows(summary)
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in head) + " |" for r in rows]
    paper = summary["average"]["paper"]
    first = next(iter(summary["datasets"].values()))["arms"]
    seeds = ", ".join(f"{arm} {a['n']}" for arm, a in first.items())
    splits = ", ".join(f"{n} {d['split'].removeprefix('held out: ')}"
                       for n, d in summary["datasets"].items())  # fmt: skip
    return "\n".join(
        [
            "## Ablation (GPT-1 Table 5 shape): held-out points (metric × 100), "
            f"mean ± std over seeds (runs per arm: {seeds})",
            "",
            *lines,
            "",
            f"GPT-1 Table 5 average: full {paper['full']}, w/o pre-training {paper['scratch']}, "
            f"w/o aux LM {paper['no_aux']} "
            f"(gain of pre-training {paper['full'] - paper['scratch']:+.1f}).",
            "",
            protocol_note(params, splits),
            "The avg column mixes metrics with different chance levels (accuracy: 1/classes; "
            "Pearson: 0); the per-metric averages below keep them apart.",
            "",
            *spread_lines(summary),
            "",
            *tuning_lines(summary),
            *efficiency_lines(summary),
        ]
    )


def efficiency_lines(summary: dict) -> list[str]:
    """The label-efficiency table: each budget's scores and the labels scratch needs."""
    ds = {n: d["label_efficiency"] for n, d in summary["datasets"].items()
          if "label_efficiency" in d}  # fmt: skip
    if not ds:
        return []
    lines = ["", "### Label efficiency (held-out points, mean ± std over seeds)", "",
             "| dataset | labels N | full | scratch | scratch needs for full's score "
             "(interpolated in log labels) |", "|---|---|---|---|---|"]  # fmt: skip
    for name, e in ds.items():
        for n in e["budgets"]:
            f, s = e["arms"]["full"][n], e["arms"]["scratch"][n]
            need = e["labels_saved"][n]["scratch_needs"]
            needs = f"> {max(e['budgets'])}" if need is None else f"{need:,.0f} ({need / n:.1f}×N)"
            lines.append(f"| {name} | {n} | {_ms(f)} | {_ms(s)} | {needs} |")
    return lines


def _ms(a: dict) -> str:
    return f"{a['mean']:.1f}" + (f" ± {a['std']:.1f}" if a["n"] > 1 else "")


def spread_lines(summary: dict) -> list[str]:
    """The average gain with datasets as the unit, leave-one-dataset-out, and the arms'
    averages and gains per metric (the "avg" column mixes metrics whose chance levels differ)."""
    avg, lines = summary["average"], []
    claim = avg.get("claim", "datasets")
    for key, which in ((claim, "Primary claim"), (next(c for c in CLAIMS if c != claim), "Also")):
        if CLAIMS[key] in avg:
            lines.append(f"{which} (gate.claim: {key}): the gain of pre-training "
                         f"{CLAIM_WORDS[key]} is {format_gain(avg[CLAIMS[key]])}.")  # fmt: skip
    g = avg.get("gain_pretraining_across_datasets")
    if g:
        line = (
            f"Datasets as the unit: gain of pre-training {format_gain(g)} "
            f"(t-interval over {g['n']} datasets)"
        )
        if "leave_one_out" in g:
            loo = sorted(g["leave_one_out"].items(), key=lambda kv: kv[1])
            (lo_name, lo), (hi_name, hi) = loo[0], loo[-1]
            line += f"; leaving one dataset out: {lo:+.1f} (without {lo_name}) to {hi:+.1f} "
            line += f"(without {hi_name})"
        lines.append(line + ".")
    for metric, values in avg["by_metric"].items():
        names = [n for n, d in summary["datasets"].items() if d["metric"] == metric]
        means = ", ".join(
            f"{k} {v:+.1f}" if k in GAINS else f"{k} {v:.1f}" for k, v in values.items()
        )
        lines.append(f"Average over the {metric} datasets ({', '.join(names)}): {means}.")
    return lines


def tuning_lines(summary: dict) -> list[str]:
    """The choices each arm made on the tune splits, what each run trained, the flags."""
    lines = [
        "### Tuning (lr chosen on the first seed's tune split, the same grid for every arm; "
        "each run stopped early on its own tune split)",
        "",
        "| dataset | arm | lr (grid) | best epoch / epochs run / optimizer steps, per seed "
        "| flags |",
        "|---|---|---|---|---|",
    ]
    for name, d in summary["datasets"].items():
        for arm, t in d["tuning"].items():
            lrs = ", ".join(f"{x:g}" for x in t["grid"]["lrs"])
            per_seed = zip(t["best_epochs"], t["epochs_run"], t["steps"], strict=True)
            runs = ", ".join(f"{b}/{e}/{s}" for b, e, s in per_seed)
            flags = "; ".join(t["flags"]) or "–"
            lines.append(f"| {name} | {arm} | {t['lr']:g} ({lrs}) | {runs} | {flags} |")
    return lines


def protocol_note(params: Params, splits: str) -> str:
    s, ft = params.study, params.finetune
    return (
        f"Protocol (genpt/arms.py): scored once, after every run trained, on rows of train "
        f"held out before anything else (seed {s.report_seed}; {splits}); dev is not read. "
        f"Each seed draws its own label budget from the rest of train and carves "
        f"{s.tune_fraction:.0%} of it as its tune split. Every arm searches the same lrs, "
        f"{s.lrs}, on the first seed's tune split; every run stops early on its own tune "
        f"split (patience {ft.patience} epochs, at most {ft.epochs}) and keeps its best "
        "epoch. `full` is the product: its first seed's model is the one evaluated, gated "
        "and published. Intervals: 95%, a paired bootstrap over the held-out rows plus "
        "the seeds' variance (Welch); a 1-seed arm gets none."
    )


def bar_chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = summary["datasets"]
    arms = list(summary["average"]["arms"])
    names = [*ds, "average"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.8))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        means = [ds[n]["arms"][arm]["mean"] for n in ds] + [summary["average"]["arms"][arm]]
        stds = [ds[n]["arms"][arm]["std"] or 0.0 for n in ds] + [0.0]
        xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=LABELS.get(arm, arm))
    avg = summary["average"]
    g = primary(avg, avg.get("claim", "datasets"))
    if g and g.get("lo") is not None and "scratch" in avg["arms"]:  # full = scratch + gain
        x = len(names) - 1 + (arms.index("full") - (len(arms) - 1) / 2) * width
        top = avg["arms"]["scratch"]
        ax.errorbar(
            [x],
            [top + g["mean"]],
            yerr=[[g["mean"] - g["lo"]], [g["hi"] - g["mean"]]],
            fmt="none",
            ecolor="k",
            elinewidth=2,
            capsize=6,
            zorder=4,
            label=f"gain of pre-training, 95% ({avg['claim']}): {format_gain(g)}",
        )
    base = [ds[n]["baseline"] for n in ds] + [summary["average"]["baseline"]]
    ax.scatter(
        range(len(names)), base, marker="_", s=600, c="k", zorder=3, label="trivial baseline"
    )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("held-out score (metric × 100)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Ablation: pre-training and the auxiliary LM objective")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def efficiency_chart(summary: dict, path: Path) -> None:
    """label_efficiency.png: per dataset, full and scratch against the labels (log scale);
    without a curve (study.curve empty), each arm's one point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = summary["datasets"]
    fig, axes = plt.subplots(1, len(ds), figsize=(3.2 * max(1, len(ds)), 3.2), squeeze=False)
    for ax, (name, d) in zip(axes[0], ds.items(), strict=True):
        e = d.get("label_efficiency")
        for arm in ("full", "scratch"):
            if e:
                pts = e["arms"][arm]
                xs = list(pts)
                ys, err = [pts[n]["mean"] for n in xs], [pts[n]["std"] or 0.0 for n in xs]
            elif arm in d["arms"]:
                xs, ys, err = [0], [d["arms"][arm]["mean"]], [d["arms"][arm]["std"] or 0.0]
            else:
                continue
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=LABELS.get(arm, arm))
        ax.axhline(d["baseline"], color="k", lw=0.8, ls=":", label="trivial baseline")
        if e:
            ax.set_xscale("log")
            ax.set_xlabel("labels")
        ax.set_title(f"{name} ({d['metric']})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out score (metric × 100)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Label efficiency: pre-trained (full) and from scratch")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
