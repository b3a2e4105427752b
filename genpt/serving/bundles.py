"""What the server serves: one bundle version, loaded and warmed up; where versions come
from; and the poller that swaps a new `latest` in.

A Version is built whole (download into its own directory, every file verified against the
manifest, every model loaded and answering a warm-up request) before the server sees it;
the swap is one assignment, so a request uses the version it started with to the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from genpt.bundle import LATEST, BundleError, RegistryError, open_bundle
from genpt.bundle.layout import MODEL_INFO, models
from genpt.bundle.registry import DEFAULT_CACHE, pointer_version
from genpt.params import ServeConfig
from genpt.serving.batcher import Batcher

log = logging.getLogger("genpt.serve")
LM = "lm"


class Source:
    """A bundle source: a bundle dir, a local registry's models/NAME/latest pointer, or
    s3://BUCKET/models/NAME/VERSION|latest. `version()` asks which version it names now."""

    def __init__(self, uri: str, cache_dir: str | Path = DEFAULT_CACHE):
        self.uri, self.cache_dir = str(uri), Path(cache_dir)
        self.s3 = self.uri.startswith("s3://")
        if self.s3:
            from genpt.stack.storage import parse_s3_uri

            self.bucket, key = parse_s3_uri(self.uri)
            self.base, _, self.pinned = key.strip("/").rpartition("/")
            if not self.base or not self.pinned:
                raise BundleError(f"{self.uri}: expected s3://BUCKET/models/NAME/VERSION|latest")
        else:
            path = Path(self.uri)
            self.pinned = LATEST if path.name == LATEST and path.is_file() else None
        self.latest = self.pinned == LATEST

    def version(self) -> str:
        if self.s3:
            if not self.latest:
                return self.pinned
            from genpt.bundle.stores import S3Store

            raw = S3Store(self.bucket, retries=2).get_bytes(f"{self.base}/{LATEST}")
            if raw is None:
                raise RegistryError(f"{self.uri}: nothing published yet")
            return pointer_version(raw, self.uri)
        path = Path(self.uri)
        if self.latest:
            return pointer_version(path.read_bytes(), self.uri)
        manifest = path / "manifest.json"
        meta = json.loads(manifest.read_text()) if manifest.is_file() else {}
        return str(meta.get("version") or path.resolve().name)

    def open(self, version: str) -> Path:
        """The verified local directory of `version` (downloaded into its own dir for S3)."""
        if self.s3:
            return open_bundle(f"s3://{self.bucket}/{self.base}/{version}", self.cache_dir)
        path = Path(self.uri)
        return open_bundle(path.parent / version if self.latest else path)


@dataclass
class TaskRunner:
    model: object  # model.onnx_runtime.OnnxTaskModel
    batcher: Batcher
    tokens: object = None  # genpt.serving.protocol.Tokens over model.tok


@dataclass
class Version:
    version: str
    root: Path
    tasks: dict[str, TaskRunner] = field(default_factory=dict)
    lm: object | None = None  # genpt.serving.completions.Completer

    @property
    def names(self) -> list[str]:
        return sorted(self.tasks) + ([LM] if self.lm else [])


def _variant(d: Path, cfg: ServeConfig) -> str:
    from model.onnx_runtime import VARIANTS

    if (d / VARIANTS[cfg.variant]).is_file():
        return cfg.variant
    log.warning("%s: no %s model in this bundle; serving its fp32 one", d.name, cfg.variant)
    return "fp32"


def warm_up_task(model) -> None:
    """One real ONNX Runtime call through the model's own encoding."""
    from genpt.serving import protocol

    req, _ = protocol.fields(model.task_type)
    row = {k: ["yes", "no"] if k == "choices" else "warm up" for k in req}
    model.predict([row])


def load(source: Source, version: str, cfg: ServeConfig, on_batch=None) -> Version:
    """Download (if remote), verify, load and warm up every model of `version`."""
    from genpt.serving import protocol
    from genpt.serving.completions import Completer, CompletionRequest
    from model.onnx_runtime import OnnxLM, OnnxTaskModel

    root = source.open(version)
    base = models(root)
    dirs = sorted(p for p in base.iterdir() if (p / MODEL_INFO).is_file())
    if not dirs:
        raise BundleError(f"{root}: no models in this bundle")
    out = Version(version, root)
    for d in dirs:
        kind = json.loads((d / MODEL_INFO).read_text()).get("kind")
        if kind == "lm":
            lm = OnnxLM(d, _variant(d, cfg), cfg.device, cfg.threads)
            out.lm = Completer(lm, cfg.max_tokens, cfg.too_long)
            warm = CompletionRequest(model=LM, prompt="warm up", max_tokens=1)
            out.lm.complete(warm, LM, version)
            continue
        model = OnnxTaskModel(d, _variant(d, cfg), cfg.device, cfg.threads)
        warm_up_task(model)

        def run(examples, model=model):
            return model.logits(examples)

        batcher = Batcher(run, cfg.max_batch_size, cfg.max_wait_ms / 1000, on_batch)
        out.tasks[d.name] = TaskRunner(model, batcher, protocol.Tokens(model.tok))
    return out


class Poller:
    """Checks the source every cfg.poll_s; a new version is loaded beside the old one and
    handed to `swap`. A version that fails verification or loading is refused (one log
    line) and never tried again; an unreachable store is logged once and retried with a
    doubling delay (up to cfg.max_backoff_s) while the current version keeps serving."""

    def __init__(self, source: Source, cfg: ServeConfig, swap, current=None, on_batch=None):
        self.source, self.cfg, self.swap, self.on_batch = source, cfg, swap, on_batch
        self.current: str | None = current
        self.refused: set[str] = set()
        self.unreachable = False

    async def check(self) -> bool:
        """One poll; True when the store answered."""
        serving = self.current or "nothing"
        try:
            version = await asyncio.to_thread(self.source.version)
            if version == self.current or version in self.refused:
                return self._reachable()
            new = await asyncio.to_thread(load, self.source, version, self.cfg, self.on_batch)
        except RegistryError as e:  # the store: unreachable, refusing, or nothing published
            if not self.unreachable:
                log.warning("bundle source unavailable (%s); still serving %s; retrying with "
                            "backoff", e, serving)  # fmt: skip
                self.unreachable = True
            return False
        except Exception as e:  # verification (IntegrityError), a bad bundle, a model ORT refuses
            log.error("refused version %s: %s; still serving %s", version, e, serving)
            self.refused.add(version)
            return self._reachable()
        self.current = version
        self.swap(new)
        log.info("serving version %s (%s)", version, ", ".join(new.names))
        return self._reachable()

    def _reachable(self) -> bool:
        if self.unreachable:
            log.info("bundle source reachable again")
            self.unreachable = False
        return True

    async def run(self) -> None:
        """Load the first version (retrying), then, for a `latest` source, poll forever."""
        delay = self.cfg.poll_s
        while True:
            ok = await self.check()
            if self.current is not None and not self.source.latest:
                return  # a fixed version: loaded once
            delay = self.cfg.poll_s if ok else min(delay * 2, self.cfg.max_backoff_s)
            await asyncio.sleep(delay if self.current else min(delay, 2.0))  # none yet: soon
