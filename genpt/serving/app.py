"""The HTTP server: KServe's REST server (Open Inference Protocol v2, health, /metrics) with
genpt's task models as KServe models, plus what KServe's Python server lacks here:
readiness that waits for the bundle, OpenAI completions without vLLM, a body size limit,
a loopback bind, quiet one-line 4xx logs and hot reload (bundles.Poller).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid

import numpy as np
import orjson
from fastapi import Request  # module level: FastAPI resolves the routes' annotations here
from starlette.responses import Response

from genpt.params import ServeConfig
from genpt.serving import protocol
from genpt.serving.bundles import LM, Poller, Source, Version

log = logging.getLogger("genpt.serve")
BINARY = b"inference-header-content-length"  # the OIP binary data extension's header


def _kserve():
    """Import kserve without letting its module-level argparse read genpt's argv."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
        import kserve.model_server
    finally:
        sys.argv = argv
    return kserve


class Metrics:
    """genpt's series beside KServe's request histograms (one set per process)."""

    _made = None

    def __new__(cls):
        if cls._made is None:
            from prometheus_client import Counter, Gauge, Histogram

            m = super().__new__(cls)
            m.version = Gauge("genpt_serve_version_info", "the bundle version served", ["version"])
            m.reloads = Counter("genpt_serve_reloads_total", "versions swapped in")
            m.batch = Histogram("genpt_serve_batch_rows", "rows per ONNX Runtime call",
                                buckets=(1, 2, 4, 8, 16, 32, 64, 128))  # fmt: skip
            m.tokens = Counter("genpt_serve_completion_tokens_total", "tokens generated")
            m.bad = Counter("genpt_serve_bad_requests_total", "requests refused with a 4xx")
            cls._made = m
        return cls._made


class State:
    """The version being served (None until the first one is loaded and warmed up)."""

    def __init__(self, cfg: ServeConfig):
        self.cfg, self.current = cfg, None
        self.lm_slots = asyncio.Semaphore(cfg.lm_concurrency)
        self.metrics = Metrics()


def build(cfg: ServeConfig, state: State):
    """KServe's model repository, data plane and REST server, wired to `state`."""
    kserve = _kserve()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.constants.constants import PredictorProtocol
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
    from kserve.model_server import app
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer
    from starlette.exceptions import HTTPException

    class Plane(DataPlane):
        async def ready(self) -> bool:  # KServe says ready at once; here: a version is up
            return state.current is not None

        async def model_metadata(self, model_name: str) -> dict:
            meta = await super().model_metadata(model_name)
            return {**meta, "versions": [state.current.version], "platform": "onnxruntime"}

    class TaskEndpoint(kserve.Model):
        """A task model's name in KServe's registry; each request uses the version current
        when it arrives."""

        def __init__(self, name: str):
            super().__init__(name)
            self.ready = True  # registered only once a version with it is warmed up

        def load(self) -> bool:
            return True

        def _runner(self, version: Version | None):
            runner = version.tasks.get(self.name) if version else None
            if runner is None:
                raise ModelNotFound(self.name)
            return runner

        def get_input_types(self):
            return protocol.input_types(self._runner(state.current).model.task_type)

        def get_output_types(self):
            m = self._runner(state.current).model
            return protocol.output_types(m.task_type, m.regression, len(m.labels or []))

        async def predict(self, payload, headers=None):
            version = state.current
            runner = self._runner(version)
            if not isinstance(payload, InferRequest):
                raise InvalidInput("use the Open Inference Protocol v2: POST /v2/models/NAME/infer")
            m = runner.model
            try:
                rows = protocol.records(payload, m.task_type, cfg.max_rows)
                examples = protocol.encode(m, rows, cfg.too_long, runner.tokens)
            except protocol.RequestError as e:
                raise InvalidInput(str(e)) from None
            logits = np.stack(await runner.batcher.submit(examples))
            if m.task_type == "multiple_choice":  # the batch's width -> this request's
                logits = logits[:, : max(len(ex) for ex in examples)]
            outs = [InferOutput(**o) for o in protocol.outputs(m, logits)]
            return InferResponse(response_id=payload.id or str(uuid.uuid4()),
                                 model_name=self.name, infer_outputs=outs,
                                 model_version=version.version)  # fmt: skip

    async def infer(request: Request) -> Response:
        """POST /v2/models/NAME/infer: KServe's own route (V2Endpoints.infer) without its
        pydantic round trips (the body into InferenceRequest, the answer into
        InferenceResponse and through FastAPI's jsonable_encoder): on a small model they
        were half of the server's time per request. The same DataPlane and KServe Model
        calls, the same answers."""
        name = request.path_params["model_name"]
        # the raw header list (Starlette's Headers mapping scans it once per key)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        body = await request.body()
        if not await plane.model_ready(name, True):  # ModelNotFound: 404
            raise ModelNotReady(name)
        if BINARY.decode() in headers:  # the binary data extension: KServe decodes it
            payload, _ = plane.decode(body, headers, PredictorProtocol.REST_V2.value, name)
        else:  # JSON, whatever the content type says (Triton's client sends none)
            try:
                payload = protocol.infer_request(body, name)
            except protocol.RequestError as e:
                raise InvalidInput(str(e)) from None
        response, out_headers = await plane.infer(name, payload, headers)
        response, more = plane.encode(name, response, headers, {})
        out_headers.update(more)
        out_headers.pop("content-length", None)
        out_headers.pop("content-type", None)
        if not isinstance(response, bytes):
            response = orjson.dumps(response)
        return Response(response, media_type="application/json", headers=out_headers)

    def swap(new: Version) -> None:
        old, state.current = state.current, new  # the swap: one assignment
        for name in new.tasks:
            if registry.get_model(name) is None:
                registry.update(TaskEndpoint(name))
        for name in [n for n in registry.get_models() if n not in new.tasks]:
            del registry.models[name]
        if old is not None:
            state.metrics.version.remove(old.version)
            state.metrics.reloads.inc()
        state.metrics.version.labels(new.version).set(1)

    def oai_error(status: int, message: str, param: str | None = None) -> JSONResponse:
        if status < 500:
            state.metrics.bad.inc()
            log.warning("%d: %s", status, message)
        return JSONResponse(status_code=status, content={"error": {
            "message": message, "type": "invalid_request_error", "param": param,
            "code": status}})  # fmt: skip

    async def completions(request: Request) -> Response:
        from pydantic import ValidationError

        from genpt.serving.completions import CompletionRequest

        try:
            body = json.loads(await request.body())
        except ValueError as e:
            return oai_error(400, f"body: not JSON ({e})")
        try:
            req = CompletionRequest.model_validate(body)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "body"
            return oai_error(400, f"{field}: {err['msg']}", field)
        version = state.current
        if version is None:
            return oai_error(503, "not ready: no bundle version loaded yet")
        if req.model != LM or version.lm is None:
            return oai_error(404, f"model: no completion model {req.model!r} (has: {LM})", "model")
        async with state.lm_slots:
            try:
                out = await asyncio.to_thread(version.lm.complete, req, LM, version.version)
            except protocol.RequestError as e:
                return oai_error(400, str(e), str(e).split(":")[0])
        state.metrics.tokens.inc(out["usage"]["completion_tokens"])
        return Response(orjson.dumps(out), media_type="application/json")

    async def list_models():
        version = state.current
        data = [] if version is None or version.lm is None else [
            {"id": LM, "object": "model", "created": int(time.time()), "owned_by": "genpt",
             "version": version.version}]  # fmt: skip
        return {"object": "list", "data": data}

    # before KServe's own routes: its v1 protocol also has GET /v1/models, and its v2 infer
    # route is the one `infer` replaces (plain Starlette routes: no FastAPI body parsing)
    app.add_route("/v2/models/{model_name}/infer", infer, methods=["POST"])
    app.add_route("/v1/completions", completions, methods=["POST"])
    app.add_api_route("/v1/models", list_models, methods=["GET"])

    async def bad_request(_, exc):
        state.metrics.bad.inc()
        log.warning("400: %s", exc)
        return JSONResponse(status_code=400, content={"error": str(exc)})

    async def not_found(_, exc):
        state.metrics.bad.inc()
        log.warning("404: %s", exc)
        return JSONResponse(status_code=404, content={"error": str(exc)})

    async def invalid_body(_, exc):  # FastAPI's 422 on a body it cannot parse -> 400
        err = (exc.errors() or [{}])[0]
        where = ".".join(str(x) for x in err.get("loc", ["body"]))
        return await bad_request(None, f"{where}: {err.get('msg', 'invalid')}")

    async def not_ready(_, exc):
        return JSONResponse(status_code=503, content={"error": str(exc)})

    class Server(RESTServer):
        def _add_middlewares(self, app):
            pass  # KServe's only one times each request for a trace log (two getrusage calls)

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            app.add_exception_handler(InvalidInput, bad_request)  # one line, no traceback
            app.add_exception_handler(ModelNotFound, not_found)
            app.add_exception_handler(ModelNotReady, not_ready)
            app.add_exception_handler(RequestValidationError, invalid_body)

    limit = cfg.max_body_bytes

    class BodyLimit:
        """413 for a body over serve.max_body_bytes (declared, or counted as it streams)."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            size = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
            if int(size or 0) > limit:
                state.metrics.bad.inc()
                log.warning("413: body of %s bytes; the limit is %d", size.decode(), limit)
                response = JSONResponse(status_code=413, content={
                    "error": f"body: {size.decode()} bytes; the limit is {limit}"})  # fmt: skip
                return await response(scope, receive, send)
            seen = 0

            async def counted():
                nonlocal seen
                msg = await receive()
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"body: over the limit of {limit} bytes")
                return msg

            await self.app(scope, counted, send)

    app.add_middleware(BodyLimit)
    registry = kserve.ModelRepository()
    plane = Plane(model_registry=registry)
    rest = Server("kserve.model_server:app", plane, ModelRepositoryExtension(registry), cfg.port,
                  grace_period=5)  # fmt: skip
    rest.config.host = cfg.host  # KServe binds 0.0.0.0; genpt: loopback unless told otherwise
    return rest, swap


def quiet_logs() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    for name in ("uvicorn.access", "kserve.trace", "botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)  # a line per request is too many


async def main(cfg: ServeConfig, src: str) -> None:
    quiet_logs()
    state = State(cfg)
    rest, swap = build(cfg, state)

    def on_batch(n: int) -> None:
        state.metrics.batch.observe(n)

    source = Source(src)
    poller = Poller(source, cfg, swap, on_batch=on_batch)
    log.info("serving %s on http://%s:%d (ready once loaded)", src, cfg.host, cfg.port)
    task = asyncio.create_task(poller.run())
    try:
        await rest.start()
    finally:
        task.cancel()


def serve(cfg: ServeConfig, src: str) -> None:
    """Run the server until SIGINT/SIGTERM."""
    asyncio.run(main(cfg, src))
