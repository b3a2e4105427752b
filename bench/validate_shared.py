"""Time `genpt validate` on all of ../shared/data (every corpus file, every labelled file).

    PYTHONPATH=. python bench/validate_shared.py [--shared ../shared/data] [--out /tmp/vs]

Single-file sets are paired with a same-schema file as `train` (QQP with MSRP test,
RTE train with QNLI dev, RACE dev with Story Cloze), so every file is checked and
leakage is measured across them. Prints wall time, failures and leakage counts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from genpt import offline

offline.apply()


# name: task type, adapter, train, dev, test, labels (paths relative to shared/data)
B, E, NLI = ["0", "1"], ["entailment", "not_entailment"], ["entailment", "neutral", "contradiction"]
SETS = {
    "sst2": ("classification", "glue_sst2", "glue/SST-2/train.tsv", "glue/SST-2/dev.tsv", None, B),
    "cola": (
        "classification", "glue_cola", "glue/CoLA/raw/in_domain_train.tsv",
        "glue/CoLA/raw/in_domain_dev.tsv", "glue/CoLA/raw/out_of_domain_dev.tsv", B,
    ),
    "rte": ("entailment", "glue_rte", "glue/RTE/train.tsv", "glue/RTE/dev.tsv", None, E),
    "qnli": ("entailment", "glue_qnli", None, "glue/QNLI/dev.tsv", None, E),
    "snli": (
        "entailment", "snli", "snli_subset/snli_1.0_dev.jsonl",
        "snli_subset/snli_1.0_test.jsonl", None, NLI,
    ),
    "sick": (
        "entailment", "sick_entailment", "sick2014/SICK_train.txt", "sick2014/SICK_trial.txt",
        "sick2014/SICK_test_annotated.txt", NLI,
    ),
    "sick_relatedness": (
        "similarity", "sick_relatedness", "sick2014/SICK_train.txt", "sick2014/SICK_trial.txt",
        "sick2014/SICK_test_annotated.txt", None,
    ),
    "stsb": ("similarity", "glue_stsb", "glue/STS-B/train.tsv", "glue/STS-B/dev.tsv", None, None),
    "mrpc": (
        "similarity", "msrp", "glue/MRPC/msr_paraphrase_train.txt",
        "glue/MRPC/msr_paraphrase_test.txt", None, B,
    ),
    "qqp": ("similarity", "qqp", None, "qqp_subset/new_dev.tsv", None, B),
    "story_cloze": (
        "multiple_choice", "story_cloze", None,
        "story_cloze/cloze_test_val__spring2016 - cloze_test_ALL_val.csv", None, None,
    ),
    "race": ("multiple_choice", "race", None, "race/RACE/dev", None, None),
    "arc_easy": (
        "multiple_choice", "arc", "arc/ARC-Easy/ARC-Easy-Train.jsonl",
        "arc/ARC-Easy/ARC-Easy-Dev.jsonl", "arc/ARC-Easy/ARC-Easy-Test.jsonl", None,
    ),
    "arc_challenge": (
        "multiple_choice", "arc", "arc/ARC-Challenge/ARC-Challenge-Train.jsonl",
        "arc/ARC-Challenge/ARC-Challenge-Dev.jsonl",
        "arc/ARC-Challenge/ARC-Challenge-Test.jsonl", None,
    ),
    "obqa": (
        "multiple_choice", "openbookqa", "openbookqa/Main/train.tsv", "openbookqa/Main/dev.tsv",
        "openbookqa/Main/test.tsv", None,
    ),
}  # fmt: skip


def shared_params(s: Path, artifacts: str):
    """Params over all shared data, and the splits to check (single-file sets: dev only)."""
    from genpt.params import Params

    datasets, only = {}, {}
    for name, (task_type, adapter, train, dev, test, labels) in SETS.items():
        datasets[name] = {
            "task_type": task_type,
            "adapter": adapter,
            "train": str(s / (train or dev)),
            "dev": str(s / dev),
            "test": str(s / test) if test else None,
            "labels": labels,
        }
        only[name] = [k for k, p in (("train", train), ("dev", dev), ("test", test)) if p]
    corpus = [str(s / p) for p in ("tinyshakespeare/*.txt", "gutenberg/*.txt", "wikitext-2/*.txt")]
    return Params(paths={"corpus": corpus, "artifacts": artifacts}, datasets=datasets), only


def main() -> None:
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parents[1]
    shared = os.environ.get("GENPT_SHARED_DATA", str(root.parent / "shared" / "data"))
    ap.add_argument("--shared", default=shared, help="default: $GENPT_SHARED_DATA")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="validate_shared.")
    t0 = time.perf_counter()
    import great_expectations  # noqa: F401 - timed separately: the import is a fixed cost

    t_import = time.perf_counter() - t0
    from genpt.ingest import validation

    params, only = shared_params(Path(a.shared), out)
    t1 = time.perf_counter()
    summary, failures = validation.validate(
        params.validation, params.paths.corpus, params.datasets, Path(out) / "docs", only
    )
    t_run = time.perf_counter() - t1
    n_rows = sum(st["rows"] for d in summary["datasets"].values() for st in d.values())
    print(f"corpus: {summary['corpus']['files']} files, {summary['corpus']['bytes'] / 1e6:.1f} MB")
    print(f"labelled: {len(params.datasets)} datasets, {n_rows} rows (all splits)")
    for name, d in summary["datasets"].items():
        for split, st in d.items():
            if "leak_train_exact" in st:
                print(
                    f"  {name}/{split}: rows {st['rows']}, skipped {st['skipped_rows']}, "
                    f"in train exact {st['leak_train_exact']} normalized "
                    f"{st['leak_train_normalized']}, in corpus {st['leak_corpus']}"
                )
    print(f"failed expectations: {len(failures)}")
    for f in failures:
        print("  " + f[:300])
    print(f"time by part (s): {summary['timing_s']}")
    print(
        f"GX import: {t_import:.1f} s; validation (all suites + Data Docs): {t_run:.1f} s; "
        f"total {t_import + t_run:.1f} s; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"Data Docs: {out}/docs/index.html")


if __name__ == "__main__":
    main()
