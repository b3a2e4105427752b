"""ORT fp32 / int8 vs PyTorch eager: classification latency and throughput, generation tokens/s.

    PYTHONPATH=. python bench/inference.py [--model artifacts/finetune/authors] [--rounds 5]

The `small` preset shape (6 layers, 384 wide), sequences of 128 tokens, batch 1 and 32.
With --model (a fine-tuned dir of that shape) dev accuracy is compared; without it a
randomly initialised model is used and prediction agreement with PyTorch is reported.
Export settings come from params.yaml's `export` section. PyTorch and ORT get the
same number of threads (--threads, default: all cores); on an oversubscribed CPU,
PyTorch's OpenMP pool degrades badly with more than one thread, so compare at 1 too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genpt import onnx_models as export
from genpt.params import load_params
from model.config import ModelConfig
from model.gpt import build_lm
from model.onnx_runtime import OnnxLM, OnnxTaskModel
from model.task_model import TaskModel
from model.tokenizer import load_tokenizer, special_ids, train_tokenizer

SEQ, BATCHES, NEW_TOKENS = 128, (1, 32), 32


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fns: dict, rounds: int, inner: int, clock=time.perf_counter) -> dict[str, float]:
    """Seconds per call for each engine: the best over interleaved rounds of the mean of
    `inner` calls. Interleaved and best-of because the CPU may be shared: other tenants
    only ever add time, and they hit every engine alike.
    """
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t = clock()
            for _ in range(inner):
                fn()
            best[name] = min(best[name], (clock() - t) / inner)
    return best


def build(model_dir: str | None, work: Path):
    """A fine-tuned small model dir, or a fresh random one written to work/model."""
    if model_dir:
        return Path(model_dir), True
    texts = [p.read_text(encoding="utf-8") for p in sorted(Path("data/corpus").glob("*.txt"))]
    tok = train_tokenizer(texts, 8192)
    torch.manual_seed(0)
    lm = build_lm(ModelConfig(preset="small", dropout=0.0), len(tok), special_ids(tok))
    model = TaskModel(lm, "classification", 4)
    out = work / "model"
    model.save(out, extra={"labels": ["austen", "dickens", "twain", "stoker"], "max_len": SEQ})
    tok.save_pretrained(str(out))
    return out, False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="fine-tuned model dir (small preset); default: random init")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: process CPU time, robust on a busy shared machine (use with --threads 1)",
    )
    args = ap.parse_args()
    threads = args.threads
    torch.set_num_threads(threads)
    params = load_params(args.params)
    cfg = params.export
    work = Path(tempfile.mkdtemp(prefix="genpt-bench-"))
    src, trained = build(args.model, work)
    model, meta = TaskModel.load(src)
    tok = load_tokenizer(src)
    ds = params.dataset("authors")
    from genpt.ingest.loaders import load_split

    rows = load_split(ds, "dev")
    print(f"exporting to {work} (int8 per_channel={cfg.int8_per_channel})")
    t0 = time.perf_counter()
    export.export_task(src, work / "cls", cfg.model_copy(update={"fp16": False}), rows[:16])
    model.lm.save_pretrained(str(work / "lm_hf"))
    tok.save_pretrained(str(work / "lm_hf"))
    lm_cfg = cfg.model_copy(update={"fp16": False})
    export.export_lm_dir(work / "lm_hf", work / "lm", lm_cfg, rows[0]["text"])
    print(f"export: {time.perf_counter() - t0:.0f} s; threads: {threads}; clock: {args.clock}")

    fp32, int8 = (
        OnnxTaskModel(work / "cls", "fp32", "cpu", threads),
        OnnxTaskModel(work / "cls", "int8", "cpu", threads),
    )
    print("providers:", fp32.providers, int8.providers)

    # Classification latency / throughput at seq 128 on real text.
    examples = list(fp32.encode(rows))
    long = [e for e in examples if len(e[0]) >= SEQ][:32]
    fixed = [[e[0][: SEQ - 1] + [e[0][-1]]] for e in long]  # exactly 128 tokens each
    print(f"\nclassification, seq {SEQ} (ms per batch; ratio = ORT / PyTorch)")
    for b in BATCHES:
        batch = fixed[:b]
        from model.inputs import collate

        x = collate(batch, "classification", special_ids(tok)["pad"])
        with torch.inference_mode():
            t = timed(
                {
                    "pt": lambda x=x: model(x["input_ids"], x["attention_mask"]),
                    "fp32": lambda batch=batch: fp32.logits(batch),
                    "int8": lambda batch=batch: int8.logits(batch),
                },
                args.rounds,
                3 if b == 1 else 1,
                CLOCKS[args.clock],
            )
        t_pt, t32, t8 = t["pt"], t["fp32"], t["int8"]
        print(
            f"  batch {b:>2}: pytorch {t_pt * 1e3:7.1f}"
            f"  ort-fp32 {t32 * 1e3:7.1f} ({t32 / t_pt:.2f}x)"
            f"  ort-int8 {t8 * 1e3:7.1f} ({t8 / t_pt:.2f}x)"
            f"  | throughput/s: {b / t_pt:.0f} / {b / t32:.0f} / {b / t8:.0f}"
        )

    # Accuracy (or agreement) over the dev set.
    from model.finetune import encode, predict

    dev = encode(rows, "classification", tok, meta["max_len"], ds.labels)
    ref = predict(model, dev, special_ids(tok)["pad"]).argmax(-1)
    seqs = [e.seqs for e in dev]
    got = {
        v: np.concatenate([m.logits(seqs[i : i + 32]) for i in range(0, len(seqs), 32)]).argmax(-1)
        for v, m in (("fp32", fp32), ("int8", int8))
    }
    gold = np.array([e.label for e in dev])
    if trained:
        accs = {"pytorch": (ref == gold).mean(), **{v: (g == gold).mean() for v, g in got.items()}}
        print("\ndev accuracy: " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in accs.items()))
    print(
        "dev predictions equal to PyTorch's: "
        + ", ".join(f"{v} {(g == ref).mean() * 100:.1f}%" for v, g in got.items())
        + ("" if trained else " (random-init model: pass --model for accuracy)")
    )

    # Generation: greedy, batch 1, a 128-token prompt, NEW_TOKENS new tokens.
    lm = model.lm.eval()
    prompt = fixed[0][0]
    x = torch.tensor([prompt])

    def hf():
        return lm.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=0,
        )

    print(f"\ngeneration, greedy, prompt {SEQ}, {NEW_TOKENS} new tokens (tokens/s)")
    fns = {"pytorch": hf}
    for v in ("fp32", "int8"):
        olm = OnnxLM(work / "lm", v, "cpu", threads)
        olm.eot = -1  # never stop early: same token count as PyTorch
        fns[f"ort-{v}"] = lambda olm=olm: olm.generate_ids(prompt, NEW_TOKENS)
    with torch.inference_mode():
        t = timed(fns, max(2, args.rounds // 2), 1, CLOCKS[args.clock])
    print(
        "  "
        + "  ".join(f"{k} {NEW_TOKENS / v:6.1f}" for k, v in t.items())
        + "  | time ratio ORT / PyTorch: "
        + ", ".join(f"{k} {v / t['pytorch']:.2f}x" for k, v in t.items() if k != "pytorch")
    )


if __name__ == "__main__":
    main()
