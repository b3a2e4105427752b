"""`genpt serve`'s parts that need no server: the compose service and the KServe manifest
(checked statically), the params, the request checks and the batcher."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
import yaml

from genpt.params import ServeConfig, load_params
from tests.conftest import ROOT

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def test_compose_serve_reads_the_stacks_latest_on_loopback():
    s = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    serve = s["serve"]
    assert serve["image"] == s["worker"]["image"]  # the same image
    cmd = serve["command"]
    assert cmd[0] == "serve" and "entrypoint" not in serve  # the image's `genpt`
    bucket = s["s3-init"]["entrypoint"][2]
    assert cmd[cmd.index("--bundle") + 1] == f"s3://{bucket}/models/genpt/latest"
    port = cmd[cmd.index("--port") + 1]
    assert serve["ports"] == [f"127.0.0.1:${{GENPT_SERVE_PORT:-8080}}:{port}"]
    env = serve["environment"]
    assert env["GENPT_S3_ENDPOINT_URL"] == s["worker"]["environment"]["GENPT_S3_ENDPOINT_URL"]
    assert all(env[k] is None for k in S3_KEYS)  # passed through by name, never a value
    assert "/v2/health/ready" in serve["healthcheck"]["test"]


def test_kserve_inferenceservice_manifest():
    """A custom predictor running the image's `genpt serve`, parameterised by image and
    bundle, keys from a Secret, probes on the OIP health routes."""
    text = (ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text()
    isvc = yaml.safe_load(text)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    (c,) = isvc["spec"]["predictor"]["containers"]
    assert c["image"] == "${GENPT_IMAGE}"
    args = c["args"]
    assert args[0] == "serve" and args[args.index("--bundle") + 1] == "${GENPT_BUNDLE}"
    port = int(args[args.index("--port") + 1])
    assert c["ports"][0]["containerPort"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e for e in c["env"]}
    for k in S3_KEYS:
        assert env[k]["valueFrom"]["secretKeyRef"]["key"] == k and "value" not in env[k]
    params = set(re.findall(r"\$\{(\w+)\}", text))
    assert params == {"GENPT_IMAGE", "GENPT_BUNDLE", "GENPT_S3_ENDPOINT"}


def test_serve_params_default_to_loopback_and_are_checked():
    cfg = load_params(ROOT / "params.yaml").serve
    assert cfg == ServeConfig()  # params.yaml spells the defaults
    assert cfg.host == "127.0.0.1"
    with pytest.raises(ValueError, match="too_long"):
        load_params(ROOT / "params.yaml", ["serve.too_long=maybe"])


class Tensor:
    def __init__(self, name, datatype, shape, data):
        self.name, self.datatype, self.shape, self.data = name, datatype, shape, data


class Req:
    def __init__(self, *inputs):
        self.inputs = list(inputs)


@pytest.mark.parametrize(
    ("task", "tensors", "words"),
    [
        ("classification", [Tensor("txt", "BYTES", [1], ["x"])], ["'txt'", "inputs: text"]),
        ("entailment", [Tensor("premise", "BYTES", [1], ["x"])], ["'hypothesis'", "required"]),
        ("classification", [Tensor("text", "INT64", [1], [1])], ["'text'", "BYTES"]),
        ("classification", [Tensor("text", "BYTES", [1, 2], ["a", "b"])], ["'text'", "shape"]),
        ("classification", [Tensor("text", "BYTES", [3], ["a"])], ["'text'", "3 elements"]),
        ("classification", [Tensor("text", "BYTES", [1], [5])], ["'text'", "strings"]),
        ("similarity", [Tensor("text_a", "BYTES", [2], ["a", "b"]),
                        Tensor("text_b", "BYTES", [1], ["a"])], ["same number of rows"]),
        ("multiple_choice", [Tensor("choices", "BYTES", [2], ["a", "b"])], ["'choices'", "shape"]),
        ("classification", [Tensor("text", "BYTES", [300], ["a"] * 300)], ["at most 256"]),
    ],
)  # fmt: skip
def test_request_errors_name_the_field_and_the_rule(task, tensors, words):
    from genpt.serving.protocol import RequestError, records

    with pytest.raises(RequestError) as e:
        records(Req(*tensors), task, 256)
    for w in words:
        assert w in str(e.value)


def test_records_from_tensors():
    from genpt.serving.protocol import records

    got = records(
        Req(
            Tensor("choices", "BYTES", [2, 3], ["a", "b", "c", "d", "e", ""]),
            Tensor("question", "BYTES", [2], [b"q1", "q2"]),
        ),
        "multiple_choice",
        8,
    )
    assert got == [{"choices": ["a", "b", "c"], "question": "q1"},
                   {"choices": ["d", "e"], "question": "q2"}]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", ["body", "not JSON"]),
        (b"[1]", ["body", "JSON object"]),
        (b"{}", ["body.inputs", "required"]),
        (b'{"inputs": [{"name": "text", "shape": [1], "data": ["x"]}]}',
         ["body.inputs.0.datatype", "required"]),
        (b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": ["1"], "data": ["x"]}]}',
         ["body.inputs.0.shape", "integers"]),
        (b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]}',
         ["body.inputs.0.data", "required"]),
        (b'{"id": 7, "inputs": []}', ["body.id", "string"]),
        (b'{"inputs": [], "outputs": [{"binary_data": true}]}', ["body.outputs.0", "name"]),
    ],
)  # fmt: skip
def test_a_json_infer_body_is_checked_field_by_field(body, words):
    """The lean infer route's reading of a JSON body (KServe's pydantic models did it)."""
    from genpt.serving.protocol import RequestError, infer_request

    with pytest.raises(RequestError) as e:
        infer_request(body, "authors")
    for w in words:
        assert w in str(e.value)


def test_a_json_infer_body_becomes_kserves_infer_request():
    from kserve.protocol.infer_type import InferRequest

    from genpt.serving.protocol import infer_request, records

    text = {"name": "text", "datatype": "bytes", "shape": [2], "data": ["a", "b"]}
    body = {"id": "r1", "parameters": {"p": 1}, "outputs": [{"name": "logits"}], "inputs": [text]}
    req = infer_request(json.dumps(body).encode(), "authors")
    assert isinstance(req, InferRequest)
    assert (req.id, req.model_name, req.parameters) == ("r1", "authors", {"p": 1})
    assert [o.name for o in req.request_outputs] == ["logits"]
    (t,) = req.inputs
    assert (t.name, t.datatype, t.shape, t.data) == ("text", "BYTES", [2], ["a", "b"])
    assert records(req, "classification", 8) == [{"text": "a"}, {"text": "b"}]


def test_batcher_joins_concurrent_requests_and_keeps_them_apart():
    """Requests arriving together run as one call; each gets its own rows back."""
    from genpt.serving.batcher import Batcher

    calls = []

    def run(items):
        calls.append(len(items))
        time.sleep(0.01)
        return [x * 10 for x in items]

    async def go():
        b = Batcher(run, max_batch=8, max_wait_s=0.05)
        return await asyncio.gather(*(b.submit([i, i + 100]) for i in range(6)))

    out = asyncio.run(go())
    assert out == [[i * 10, (i + 100) * 10] for i in range(6)]
    assert calls == [8, 4]  # 4 requests (8 rows) at once, then the other 2


def test_batcher_passes_an_error_to_every_waiting_request():
    from genpt.serving.batcher import Batcher

    def run(items):
        raise RuntimeError("ort failed")

    async def go():
        b = Batcher(run, max_batch=4, max_wait_s=0.01)
        return await asyncio.gather(*(b.submit([i]) for i in range(3)), return_exceptions=True)

    assert all(isinstance(e, RuntimeError) for e in asyncio.run(go()))
