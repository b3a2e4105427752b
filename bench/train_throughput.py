"""Pre-training throughput: tokens/s and achieved FLOP/s against the measured matmul peak.

    python bench/train_throughput.py                       # tiny and small, fp32 on CPU
    python bench/train_throughput.py --presets gpt1        # on a GPU: bf16 vs the bf16 peak

Runs the real training loop (model.pretrain.pretrain) on random tokens, drops the
warm-up steps, and reports model FLOP utilisation (MFU): achieved training FLOP/s
(6N + 12·L·d·T per token, PaLM appendix B) over a dense matmul peak measured in
the same process with the same dtype.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")

from model.config import ModelConfig, PretrainConfig  # noqa: E402
from model.gpt import build_lm, n_params  # noqa: E402
from model.pretrain import flops_per_token, matmul_peak, pretrain  # noqa: E402
from model.shards import TokenShards  # noqa: E402

SP = {"start": 1, "delim": 2, "extract": 3, "pad": 4, "eot": 0}


def run(preset: str, args, device: torch.device, peak: float) -> dict:
    vocab = args.vocab
    cfg_m = ModelConfig(preset=preset, dropout=0.0, n_layer=args.n_layer, n_embd=args.n_embd)
    torch.manual_seed(0)
    lm = build_lm(cfg_m, vocab, SP)
    seq = args.seq or cfg_m.shape().n_ctx
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokens.bin"
        np.random.default_rng(0).integers(0, vocab, 2_000_000, dtype=np.uint16).tofile(path)
        shards = TokenShards([path], "uint16")
        cfg = PretrainConfig(
            steps=args.warmup + args.steps,
            batch_size=args.batch,
            seq_len=seq,
            warmup_steps=1,
            eval_every=10**9,
            eval_batches=1,
            ckpt_every=10**9,
            precision="bf16" if args.bf16 else "fp32",
            compile=args.compile,
            device=device.type,
        )
        rates: list[float] = []
        pretrain(
            lm,
            shards,
            shards,
            cfg,
            Path(d) / "out",
            seed=0,
            log=lambda m, s: rates.append(m["train/tokens_per_s"]) if s > args.warmup else None,
        )
    tok_s = statistics.median(rates)
    flops = tok_s * flops_per_token(lm, seq)
    return {
        "preset": preset,
        "params_M": n_params(lm) / 1e6,
        "batch": args.batch,
        "seq": seq,
        "tokens_per_s": tok_s,
        "tflops": flops / 1e12,
        "mfu": flops / peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--n-layer", type=int, default=None, help="override the preset's layers")
    ap.add_argument("--n-embd", type=int, default=None, help="override its width (default "
                    "recipe: --presets tiny --n-layer 4 --n-embd 128)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=None, help="default: the preset's context")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="default on CUDA")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.bf16 = args.bf16 or device.type == "cuda"
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    n = 8192 if device.type == "cuda" else 2048
    peak = matmul_peak(device, dtype, n)
    name = (
        torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    )
    print(f"device: {name}  dtype: {dtype}  matmul peak ({n}^3): {peak / 1e12:.3f} TFLOP/s")
    print(
        f"{'preset':<7}{'params':>9}{'batch':>7}{'seq':>6}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>8}"
    )
    for preset in args.presets:
        r = run(preset, args, device, peak)
        print(
            f"{r['preset']:<7}{r['params_M']:>8.2f}M{r['batch']:>7}{r['seq']:>6}"
            f"{r['tokens_per_s']:>12,.0f}{r['tflops']:>10.3f}{r['mfu']:>8.1%}"
        )
    peak_after = matmul_peak(device, dtype, n, seconds=2.0)
    print(f"matmul peak re-measured after the runs: {peak_after / 1e12:.3f} TFLOP/s")


if __name__ == "__main__":
    main()
