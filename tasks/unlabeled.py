"""Stage `unlabeled`: unlabeled in-domain text for the corpus (corpus.in_domain): each
dataset's label pool without labels, held-out, dev and test rows kept out, and its
declared `unlabeled` files (genpt/ingest/unlabeled.py). Writes unlabeled/NAME.txt and
unlabeled/manifest.json; tokenize reads them beside paths.corpus."""

from __future__ import annotations

from genpt import artifacts
from genpt.ingest import unlabeled as tt
from genpt.ingest.splits import report_split
from genpt.io import atomic_dir, read_json, write_json
from genpt.params import Params


def run(params: Params) -> dict:
    cfg, texts = params.corpus, {}
    if cfg.in_domain:
        for name, ds in params.datasets.items():
            pool, report = report_split(params, name)
            texts[name] = tt.pool_text(ds, pool, report)
    summary = read_json(artifacts.validate_summary(params)) or {}
    corpus_bytes = (summary.get("corpus") or {}).get("bytes", 0)
    docs = {name: (lambda ds=params.datasets[name]: tt.unlabeled_docs(ds)) for name in texts}
    times = 1
    if cfg.in_domain_share:  # the bytes it makes once (the declared files: one more pass)
        once = sum(len(t.encode()) + 2 for rows, _ in texts.values() for t in rows)
        once += sum(len(t.encode()) + 2 for name in texts for t in docs[name]())
        times = tt.repeats(cfg.in_domain_share, once, corpus_bytes)
    manifest = {"enabled": cfg.in_domain, "repeats": times, "corpus_bytes": corpus_bytes,
                "datasets": {}}  # fmt: skip
    with atomic_dir(artifacts.unlabeled(params)) as d:
        for name, (rows, left_out) in texts.items():
            n = tt.write(d / f"{name}.txt", rows, docs[name], times)
            manifest["datasets"][name] = {"rows": len(rows), "left_out": left_out, "bytes": n}
        total = sum(x["bytes"] for x in manifest["datasets"].values())
        manifest["share"] = round(total / max(1, total + corpus_bytes), 4)
        write_json(d / artifacts.unlabeled_manifest.name, manifest)
    return manifest
