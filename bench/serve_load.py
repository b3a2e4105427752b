"""Closed-loop load on `genpt serve` (127.0.0.1), beside in-process ONNX Runtime.

    PYTHONPATH=. python bench/serve_load.py --bundle DIR|s3://.../latest [--seconds 10]
    PYTHONPATH=. python bench/serve_load.py --url http://127.0.0.1:8080 --bundle DIR
    PYTHONPATH=. python bench/serve_load.py --bundle REGISTRY/models/NAME/latest --reload 60

Starts `genpt serve` on a free loopback port (or uses --url), then for each concurrency
(1, 8, 32) runs that many clients, each sending its next request as soon as the last one
answers, for --seconds: the task model (one dev-like row per request, OIP v2 infer) and the
LM (a completion of --tokens tokens, greedy). Prints requests/s, rows or tokens/s, p50,
p99 and errors, beside the same work through an in-process ONNX Runtime session: batches of
--batch rows for the task model (its rows/s: the limit on this machine), and
OnnxLM.generate_ids one prompt after another for the LM (what `genpt generate` does), each
with 1 intra-op thread and with every core (GENPT_BENCH_THREADS=N: only N); then the
issue's targets: the server against the best in-process figure.

--reload S: instead, the task model at concurrency 8 for S seconds; at S/3 a new version
(a copy of the current one under a new name) is published to the local registry's
`latest`. Prints requests, failures, and when the answers' model_version switched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROWS = [
    "It was the best of times, it was the worst of times.",
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "I beheld the wretch, the miserable monster whom I had created.",
    "The sun shone, having no alternative, on the nothing new.",
]
PROMPT = "Alice was beginning to get very tired"


def closed_loop(call, concurrency: int, seconds: float) -> dict:
    """`concurrency` threads calling call(i) back to back; latencies and errors."""
    lat, errors, stop = [], [0], threading.Event()
    lock = threading.Lock()

    def worker(w: int) -> None:
        i = w
        while not stop.is_set():
            t = time.perf_counter()
            ok = call(i)
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    lat.append(dt)
                else:
                    errors[0] += 1
            i += concurrency

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat or [np.nan]) * 1000
    return {"n": len(lat), "rps": len(lat) / wall, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "errors": errors[0], "wall": wall}  # fmt: skip


def http_loop(url: str, make, concurrency: int, seconds: float) -> dict:
    """Like closed_loop, for HTTP: `concurrency` asyncio clients on one aiohttp session
    (a thread per client costs the 2 shared cores more than the server does).
    make(i) -> (path, json body); the answer's JSON goes to make.seen if it has one."""
    import asyncio

    import aiohttp

    async def run():
        lat, errors, end = [], [0], time.perf_counter() + seconds
        conn = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(url, connector=conn, timeout=timeout) as session:

            async def client(w: int) -> None:
                i = w
                while time.perf_counter() < end:
                    path, body = make(i)
                    t = time.perf_counter()
                    try:
                        async with session.post(path, json=body) as r:
                            out, status = await r.json(), r.status
                    except (aiohttp.ClientError, TimeoutError):
                        status = None
                    if status == 200:
                        lat.append(time.perf_counter() - t)
                        getattr(make, "seen", lambda o: None)(out)
                    else:
                        errors[0] += 1
                    i += concurrency

            t0 = time.perf_counter()
            await asyncio.gather(*(client(w) for w in range(concurrency)))
            wall = time.perf_counter() - t0
        ms = np.array(lat or [np.nan]) * 1000
        return {"n": len(lat), "rps": len(lat) / wall, "p50": float(np.percentile(ms, 50)),
                "p99": float(np.percentile(ms, 99)), "errors": errors[0], "wall": wall}  # fmt: skip

    return asyncio.run(run())


def start_server(bundle: str, port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "genpt.cli", "serve", "--bundle", bundle, "--port", str(port),
           *[x for s in extra for x in ("-S", s)]]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str, timeout: float = 300) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}: not ready after {timeout} s")


def publish_copy(latest: Path) -> str:
    """Copy the version `latest` names to a new name, then point `latest` at it."""
    import json
    import shutil

    from genpt.io import atomic_write_text

    old = json.loads(latest.read_text())["version"]
    new = f"{old}-r{int(time.time())}"
    shutil.copytree(latest.parent / old, latest.parent / new)
    atomic_write_text(latest, json.dumps({"version": new}))
    return new


def reload_run(url: str, latest: Path, model: str, seconds: float) -> None:
    seen, stamp = [], [None, None]
    t0 = time.perf_counter()

    def infer(i: int):
        return f"/v2/models/{model}/infer", {"inputs": [{"name": "text", "datatype": "BYTES",
            "shape": [1], "data": [ROWS[i % len(ROWS)]]}]}  # fmt: skip

    infer.seen = lambda out: seen.append((time.perf_counter() - t0, out["model_version"]))

    def publisher():
        time.sleep(seconds / 3)
        stamp[0] = time.perf_counter() - t0
        stamp[1] = publish_copy(latest)

    threading.Thread(target=publisher).start()
    res = http_loop(url, infer, 8, seconds)
    versions = [v for _, v in seen]  # in completion order
    changes = sum(1 for a, b in zip(versions, versions[1:], strict=False) if a != b)
    old_last = max((t for t, v in seen if v != stamp[1]), default=float("nan"))
    new_first = min((t for t, v in seen if v == stamp[1]), default=float("nan"))
    print(
        f"hot reload at concurrency 8 for {seconds:.0f} s: {res['n']} requests, "
        f"{res['errors']} failed, p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms"
    )
    print(
        f"published {stamp[1]} at t={stamp[0]:.1f} s; last old answer at {old_last:.2f} s, "
        f"first new at {new_first:.2f} s; version changes in completion order: {changes}"
    )


def main() -> None:
    from genpt.bundle import model_dir, open_bundle
    from genpt.stack.seaweedfs import free_ports
    from model.onnx_runtime import OnnxLM, OnnxTaskModel

    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True, help="also the in-process models' source")
    ap.add_argument("--url", help="a running server (default: start one)")
    ap.add_argument("--model", default="authors")
    ap.add_argument("--variant", default="fp32")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=32, help="max_tokens per completion")
    ap.add_argument("--batch", type=int, default=32, help="in-process rows per ORT call")
    ap.add_argument("-S", dest="sets", action="append", default=[], help="serve params")
    ap.add_argument("--reload", type=float, help="the hot-reload run, this many seconds")
    args = ap.parse_args()

    proc = None
    url = args.url
    if not url:
        port = free_ports(1)[0]
        url = f"http://127.0.0.1:{port}"
        proc = start_server(args.bundle, port, [f"serve.variant={args.variant}", *args.sets])
    try:
        wait_ready(url)
        if args.reload:
            return reload_run(url, Path(args.bundle), args.model, args.reload)
        rows = []

        def infer(i: int):
            return f"/v2/models/{args.model}/infer", {"inputs": [{"name": "text",
                "datatype": "BYTES", "shape": [1], "data": [ROWS[i % len(ROWS)]]}]}  # fmt: skip

        tokens = [0]

        def complete(i: int):
            return "/v1/completions", {"model": "lm", "prompt": PROMPT,
                                       "max_tokens": args.tokens, "temperature": 0}  # fmt: skip

        def count(out: dict) -> None:
            tokens[0] += out["usage"]["completion_tokens"]

        complete.seen = count
        for c in args.concurrency:
            res = http_loop(url, infer, c, args.seconds)
            rows.append(("server", args.model, c, res, res["rps"]))
            tokens[0] = 0
            res = http_loop(url, complete, c, args.seconds)
            rows.append(("server", "lm", c, res, tokens[0] / res["wall"]))
    finally:
        if proc:
            proc.terminate()
            proc.wait()

    root = open_bundle(args.bundle)
    # ONNX Runtime intra-op threads in-process: GENPT_BENCH_THREADS, else 1 and every core
    # (the best of them is the limit the server is compared with)
    env = int(os.environ.get("GENPT_BENCH_THREADS", 0))
    counts = [env] if env else sorted({1, os.cpu_count() or 1})
    best = {"task": 0.0, "lm": 0.0}
    for threads in counts:
        task = OnnxTaskModel(model_dir(root, args.model), args.variant, "cpu", threads)
        batch = [{"text": ROWS[i % len(ROWS)]} for i in range(args.batch)]
        res = closed_loop(lambda i, t=task, b=batch: bool(t.predict(b, args.batch)), 1,
                          args.seconds)  # fmt: skip
        rate = res["rps"] * args.batch
        rows.append(("in-process", f"{args.model} x{args.batch}, {threads} thr", 1, res, rate))
        best["task"] = max(best["task"], rate)
        if threads == counts[0]:
            res = closed_loop(lambda i, t=task, b=batch: bool(t.predict(b[:1])), 1, args.seconds)
            rows.append(("in-process", f"{args.model}, {threads} thr", 1, res, res["rps"]))
        lm = OnnxLM(model_dir(root, "lm"), args.variant, "cpu", threads)
        ids = lm.tok(PROMPT, add_special_tokens=False)["input_ids"]
        tokens[0] = 0

        def gen(i: int, lm=lm, ids=ids) -> bool:
            tokens[0] += len(lm.generate_ids(ids, args.tokens, greedy=True))
            return True

        res = closed_loop(gen, 1, args.seconds)
        rate = tokens[0] / res["wall"]
        rows.append(("in-process", f"lm (generate), {threads} thr", 1, res, rate))
        best["lm"] = max(best["lm"], rate)

    print(f"\n{Path(args.bundle).name or args.bundle}: {args.seconds:.0f} s per row, "
          f"{os.cpu_count()} CPUs, variant {args.variant}\n")  # fmt: skip
    print("| where | model | concurrency | requests | req/s | rows or tokens/s | p50 ms | "
          "p99 ms | errors |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for where, model, c, r, rate in rows:
        print(f"| {where} | {model} | {c} | {r['n']} | {r['rps']:.1f} | {rate:.1f} | "
              f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |")  # fmt: skip
    print()
    for where, model, c, r, rate in rows:  # the targets: 70% of in-process; p99 < 3x p50
        if where == "server" and (model, c) in ((args.model, 32), ("lm", 8)):
            limit = best["lm" if model == "lm" else "task"]
            print(f"{model} at concurrency {c}: {rate:.0f}/s = {100 * rate / limit:.0f}% of the "
                  f"best in-process {limit:.0f}/s; p99 {r['p99'] / r['p50']:.1f}x p50")  # fmt: skip


if __name__ == "__main__":
    main()
