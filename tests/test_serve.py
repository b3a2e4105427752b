"""`genpt serve` as a user runs it: a subprocess on a free loopback port, serving the
`latest` of a real SeaweedFS store that this module publishes to (conftest's `published`
bundle: the LM and one model per task type), answered through stock clients of the
protocols (tritonclient's Open Inference Protocol client, the `openai` package).

The tests share one server and one store and run in file order: nothing published (not
ready), v1 (ready; answers equal `genpt predict` / `genpt generate`), bad requests, v2 under
load (hot reload), a corrupt v3 (refused), the store stopped (still serving).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from genpt.stack.seaweedfs import free_ports
from tests.conftest import ROOT, seaweedfs

BUCKET, LATEST = "genpt-models", "s3://genpt-models/models/genpt/latest"
TASKS = ("authors", "snli", "stsb", "arc")
PROMPT = "Alice was beginning to get very tired"


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url, self.proc, self.log = url, proc, log
        self.http = httpx.Client(base_url=url, timeout=60)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, cond, what: str, timeout: float = 120.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"server exited:\n{self.text()[-3000:]}"
            got = cond()
            if got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text()[-3000:]}")

    def status(self, path: str) -> int | None:
        try:
            return self.http.get(path).status_code
        except httpx.TransportError:
            return None


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with seaweedfs(tmp_path_factory.mktemp("serve-weed")) as s:
        yield s


def s3(store):
    from genpt.bundle.stores import S3Store

    old = {k: os.environ.get(k) for k in store.env()}
    os.environ.update(store.env())
    try:
        return S3Store(BUCKET, retries=2)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def publish(store, bundle: Path, version: str, corrupt: str | None = None) -> None:
    """`published` as models/genpt/VERSION and then `latest`, the order genpt publish uses;
    `corrupt`: a file uploaded with one byte changed (its manifest entry unchanged)."""
    from genpt.bundle.manifest import dumps

    client = s3(store)
    manifest = {**json.loads((bundle / "manifest.json").read_text()), "version": version}
    for rel in manifest["files"]:
        data = (bundle / rel).read_bytes()
        if rel == corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        client.client.put_object(Bucket=BUCKET, Key=f"models/genpt/{version}/{rel}", Body=data)
    client.put_bytes(f"models/genpt/{version}/manifest.json", dumps(manifest))
    client.put_bytes("models/genpt/latest", dumps({"version": version}))


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """`genpt serve --bundle s3://.../latest`, started before anything is published."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_ports(1)[0]
    env = {**os.environ, **store.env(), "GENPT_CACHE": str(tmp / "cache")}
    env["PYTHONPATH"] = str(ROOT)
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "genpt.cli", "serve", "--bundle", LATEST, "--port", str(port),
           "-p", str(ROOT / "params.yaml"), "-S", "serve.poll_s=0.5", "-S", "serve.max_backoff_s=2",
           "-S", "serve.device=cpu", "-S", "serve.max_wait_ms=2"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", proc, log)
    try:
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def infer_body(rows: list[dict], name: str) -> dict:
    """An OIP v2 request with a BYTES tensor per record field."""
    if name == "arc":
        k = max(len(r["choices"]) for r in rows)
        choices = [c for r in rows for c in r["choices"] + [""] * (k - len(r["choices"]))]
        inputs = [
            {"name": "choices", "datatype": "BYTES", "shape": [len(rows), k], "data": choices}
        ]
        for f in ("context", "question"):
            inputs.append({"name": f, "datatype": "BYTES", "shape": [len(rows)],
                           "data": [r.get(f) or "" for r in rows]})  # fmt: skip
        return {"inputs": inputs}
    from model.schema import TEXT_FIELDS

    task = {"authors": "classification", "snli": "entailment", "stsb": "similarity"}[name]
    return {"inputs": [{"name": f, "datatype": "BYTES", "shape": [len(rows)],
                        "data": [r[f] for r in rows]} for f in TEXT_FIELDS[task]]}  # fmt: skip


def fits(bundle: Path, name: str, row: dict) -> bool:
    """The row's model input fits the model's context untruncated (serve.too_long: refuse)."""
    from model.inputs import encode_record
    from model.tokenizer import load_tokenizer

    task = json.loads((bundle / "onnx" / name / "task.json").read_text())
    tok = load_tokenizer(bundle / "onnx" / name)
    ex = encode_record(row, task["task_type"], tok, 1 << 30)
    return max(len(s) for s in ex) <= task["max_len"]


@pytest.fixture(scope="module")
def v1(server, store, published) -> dict:
    """Waits until the server is live with nothing published, notes the readiness routes,
    publishes v1 and waits until its models are ready. Returns the statuses before."""
    assert server.wait(lambda: server.status("/v2/health/live") == 200, "live")
    time.sleep(1.0)  # a few polls of an empty store
    before = {p: server.status(p) for p in ("/v2/health/ready", "/v2/models/authors/ready")}
    publish(store, published, "v1")
    server.wait(lambda: server.status("/v2/models/authors/ready") == 200, "authors ready")
    return before


def test_not_ready_until_a_version_is_loaded(server, v1):
    """Live at once; /v2/health/ready 503 while nothing is published, 200 once v1 is loaded
    and warmed up; then every model of the bundle is listed and ready."""
    assert v1 == {"/v2/health/ready": 503, "/v2/models/authors/ready": 404}
    assert server.status("/v2/health/ready") == 200
    models = server.http.get("/v2/models").json()["models"]
    assert sorted(models) == sorted(TASKS)
    for name in TASKS:
        assert server.http.get(f"/v2/models/{name}/ready").json()["ready"] is True
    assert [m["id"] for m in server.http.get("/v1/models").json()["data"]] == ["lm"]
    meta = server.http.get("/v2/models/stsb").json()
    assert meta["versions"] == ["v1"]
    assert [i["name"] for i in meta["inputs"]] == ["text_a", "text_b"]
    assert {o["name"] for o in meta["outputs"]} == {"prediction", "score"}
    metrics = server.http.get("/metrics").text
    assert 'genpt_serve_version_info{version="v1"} 1.0' in metrics


@pytest.mark.parametrize("name", TASKS)
def test_infer_equals_genpt_predict(server, v1, published, tiny_export, name, tmp_path):
    """tritonclient's HTTP client (Triton's own OIP v2 client, no genpt code) sends dev rows;
    predictions equal `genpt predict` on the same bundle, logits within 1e-4."""
    import tritonclient.http as triton

    from genpt import serve
    from genpt.ingest.loaders import load_split

    rows = [r for r in load_split(tiny_export.dataset(name), "dev") if fits(published, name, r)]
    rows = rows[:6]
    if name == "stsb":
        rows[0] = {**rows[0], "text_a": " ".join([rows[0]["text_a"]] * 20)}  # over max_len
    inp = tmp_path / "rows.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    serve.predict(str(published), str(inp), str(tmp_path / "out.jsonl"), name, device="cpu")
    ref = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]

    if name == "stsb":  # serve.too_long is refuse: the long row gets a 400 naming the limit
        r = server.http.post(f"/v2/models/{name}/infer", json=infer_body(rows, name))
        assert r.status_code == 400 and "context is 64" in r.json()["error"], r.text
        rows, ref = rows[1:], ref[1:]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    tensors = []
    for t in infer_body(rows, name)["inputs"]:
        x = triton.InferInput(t["name"], t["shape"], "BYTES")
        x.set_data_from_numpy(np.array(t["data"], dtype=object).reshape(t["shape"]), False)
        tensors.append(x)
    out = client.infer(name, tensors)
    assert out.get_response()["model_version"] == "v1"
    pred = out.as_numpy("prediction")
    if name == "stsb":  # regression: the score
        assert np.allclose(pred, [r["prediction"] for r in ref], atol=1e-4)
        assert np.allclose(out.as_numpy("score"), pred)
        return
    got = [p.decode() if isinstance(p, bytes) else p if isinstance(p, str) else int(p)
           for p in pred]  # fmt: skip
    assert got == [r["prediction"] for r in ref]
    logits = out.as_numpy("logits")
    want = np.array([[np.nan if v is None else v for v in r["logits"]] for r in ref])
    assert logits.shape == want.shape
    seen = ~np.isnan(want)
    assert np.allclose(logits[seen], want[seen], atol=1e-4)
    if name == "arc":  # a missing choice (a shorter row): float32's lowest logit
        assert (logits[~seen] <= np.finfo(np.float32).min).all()
    else:
        labels = [x.decode() if isinstance(x, bytes) else x for x in out.as_numpy("labels")]
        assert labels == tiny_export.dataset(name).labels


def test_completion_greedy_equals_genpt_generate(server, v1, published):
    """The `openai` package's client; temperature 0 gives `genpt generate --greedy`'s text."""
    from openai import OpenAI

    from genpt import serve

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    got = client.completions.create(model="lm", prompt=PROMPT, max_tokens=24, temperature=0)
    want = serve.generate(str(published), PROMPT, device="cpu", greedy=True, max_new_tokens=24)
    assert got.choices[0].text == want
    assert got.system_fingerprint == "v1"
    body = {"model": "lm", "prompt": PROMPT, "max_tokens": 24, "temperature": 0, "logprobs": 0}
    lp = server.http.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]
    assert got.usage.completion_tokens == len(lp["tokens"])
    # sampling: seeded, so the same seed gives the same text; stop cuts before the string
    body = {"model": "lm", "prompt": PROMPT, "max_tokens": 20, "temperature": 1.0,
            "top_p": 0.9, "seed": 7}  # fmt: skip
    a, b = (server.http.post("/v1/completions", json=body).json() for _ in range(2))
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    text = a["choices"][0]["text"]
    if len(text.strip()) > 2:
        stop = text.strip()[1:3]
        c = server.http.post("/v1/completions", json={**body, "stop": [stop]}).json()
        assert stop not in c["choices"][0]["text"] and c["choices"][0]["finish_reason"] == "stop"


def test_echo_logprobs_equal_the_pytorch_lm(server, v1, tiny_export):
    """echo + logprobs (max_tokens 0): the prompt's per-token log-probabilities, as an
    evaluation harness scores answers, equal the PyTorch LM's within 1e-4."""
    import torch
    from transformers import AutoModelForCausalLM

    from model.tokenizer import load_tokenizer

    body = {"model": "lm", "prompt": PROMPT, "max_tokens": 0, "echo": True, "logprobs": 2}
    r = server.http.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    hf = tiny_export.artifacts() / "pretrain" / "hf"
    tok = load_tokenizer(hf)
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    lm = AutoModelForCausalLM.from_pretrained(str(hf)).eval()
    with torch.no_grad():
        ref = torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), -1)
    want = [ref[t, ids[t + 1]].item() for t in range(len(ids) - 1)]
    assert lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) == len(ids)
    assert np.allclose(lp["token_logprobs"][1:], want, atol=1e-4)
    assert "".join(lp["tokens"]) == PROMPT
    assert all(len(t) == 2 for t in lp["top_logprobs"][1:])
    assert r.json()["choices"][0]["text"] == PROMPT


BAD = [  # (method, path, body, status, words the message must hold)
    ("post", "/v2/models/nope/infer", {"inputs": []}, 404, ["nope"]),
    ("post", "/v2/models/..%2Fauthors/infer", {"inputs": []}, 404, []),
    ("post", "/v2/models/%2Fetc%2Fpasswd/infer", {"inputs": []}, 404, []),
    ("get", "/v2/models/..%2F..%2Fmanifest.json", None, 404, []),
    (
        "post",
        "/v2/models/authors/infer",
        {"inputs": [{"name": "premise", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
        400,
        ["premise", "not an input"],
    ),  # fmt: skip
    (
        "post",
        "/v2/models/snli/infer",
        {"inputs": [{"name": "premise", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
        400,
        ["hypothesis", "required"],
    ),  # fmt: skip
    (
        "post",
        "/v2/models/authors/infer",
        {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        400,
        ["text", "BYTES"],
    ),  # fmt: skip
    (
        "post",
        "/v2/models/authors/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["x"]}]},
        400,
        ["text", "shape"],
    ),  # fmt: skip
    (
        "post",
        "/v2/models/authors/infer",
        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["word " * 200]}]},
        400,
        ["'text'", "row 0", "context is 128"],
    ),  # fmt: skip
    ("post", "/v2/models/authors/infer", b"{not json", 400, []),
    ("post", "/v1/completions", b"{not json", 400, ["JSON"]),
    (
        "post",
        "/v1/completions",
        {"model": "lm", "prompt": "x", "max_tokens": 100000},
        400,
        ["max_tokens"],
    ),  # fmt: skip
    (
        "post",
        "/v1/completions",
        {"model": "lm", "prompt": "x", "max_tokens": -1},
        400,
        ["max_tokens"],
    ),  # fmt: skip
    ("post", "/v1/completions", {"model": "../lm", "prompt": "x"}, 404, ["model"]),
    (
        "post",
        "/v1/completions",
        {"model": "lm", "prompt": "x", "temperature": 9},
        400,
        ["temperature"],
    ),  # fmt: skip
    ("post", "/v2/models/authors/infer", b"x" * 2_000_000, 413, ["limit"]),
]


@pytest.mark.parametrize("case", BAD, ids=[f"{c[1]}-{c[3]}-{i}" for i, c in enumerate(BAD)])
def test_bad_request_gets_its_4xx_and_the_next_good_one_works(server, v1, case):
    method, path, body, status, words = case
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = server.http.request(method.upper(), path, **({} if body is None else kw))
    assert r.status_code == status, r.text
    for w in words:
        assert w in r.text, r.text
    good = infer_body([{"text": "a good row"}], "authors")
    assert server.http.post("/v2/models/authors/infer", json=good).status_code == 200


def test_hot_reload_under_load_then_a_corrupt_version_is_refused(server, v1, store, published):
    """v2 published while a client loops: no request fails and model_version changes once,
    v1 -> v2. A v3 with one weight file altered fails verification: one log line, v2 stays."""
    body = infer_body([{"text": "It was the best of times"}], "authors")
    seen, errors, stop = [], [], threading.Event()

    def loop():
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v2/models/authors/infer", json=body)
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    seen.append(r.json()["model_version"])

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        server.wait(lambda: len(seen) > 20, "requests on v1")
        publish(store, published, "v2")
        server.wait(lambda: seen.count("v2") > 20, "requests on v2")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    changes = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert seen[0] == "v1" and len(changes) == 1 and seen[-1] == "v2", changes

    weight = "onnx/authors/onnx/model.onnx"
    publish(store, published, "v3", corrupt=weight)
    server.wait(lambda: "refused version v3" in server.text(), "v3 refused")
    r = server.http.post("/v2/models/authors/infer", json=body)
    assert r.status_code == 200 and r.json()["model_version"] == "v2"
    time.sleep(1.5)  # more polls: refused once, not again
    assert server.text().count("refused version v3") == 1
    assert weight.split("/")[-1] in server.text()


def test_store_stopped_while_serving(server, v1, store):
    """S3 down: requests keep succeeding on the loaded version; the outage is logged once.
    Neither S3 key appears in the server's log."""
    from genpt.stack import seaweedfs as stack

    before = server.text().count("bundle source unavailable")
    stack.down(store.dir)
    body = infer_body([{"text": "a row while S3 is down"}], "authors")
    end = time.monotonic() + 6
    n = 0
    while time.monotonic() < end:
        r = server.http.post("/v2/models/authors/infer", json=body)
        assert r.status_code == 200 and r.json()["model_version"] == "v2", r.text
        n += 1
    assert server.status("/v2/health/ready") == 200
    assert server.text().count("bundle source unavailable") == before + 1
    log = server.text() + server.http.get("/metrics").text
    assert store.access_key not in log and store.secret_key not in log
