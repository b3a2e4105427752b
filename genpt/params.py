"""params.yaml: every tunable of the pipeline, loaded into typed, validated config.

Unknown keys and wrong types fail with a message that names the key. Overrides
use DVC's syntax, `section.key=value` (the value is parsed as YAML).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from genpt.errors import GenptError
from model.config import FinetuneConfig, ModelConfig, PretrainConfig, Strict, TokenizerConfig
from model.schema import NEEDS_LABELS, TaskType

DEFAULT_PARAMS = "params.yaml"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 as a float (YAML 1.1 needs 1.0e-3)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d[\d_]*)?(?:\.[\d_]*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.[\d_]*$"
        r"|^[-+]?\.\d[\d_]*$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def read_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ParamsError(GenptError, ValueError):
    """A params.yaml problem; the message names the file and key."""


class PathsConfig(Strict):
    corpus: list[str] = ["data/corpus/*.txt"]  # globs or s3:// URLs (genpt/ingest/corpus.py)
    artifacts: str = "artifacts"  # every stage's outputs go under here
    val_fraction: float = Field(0.05, gt=0, lt=1)  # tail of each document held out


class CorpusConfig(Strict):
    """How paths.corpus is read (genpt/ingest/corpus.py, docs/corpus.md)."""

    root: str = "data/corpus"  # holds every local corpus file: validate's and tokenize's DVC dep
    format: Literal["auto", "text", "jsonl", "parquet", "datasets"] = "auto"  # auto: by name
    text_field: str = "text"  # JSONL, Parquet, datasets: the field holding a document
    builder: str | None = None  # a `datasets` builder (json, parquet, ...) over paths.corpus
    split: str = "train"  # datasets: the split read
    # Unlabeled in-domain text (stage `unlabeled`): each dataset's label pool (train without
    # the held-out report rows; never dev or test) as text without labels, and the files of
    # its `unlabeled`, join the corpus. in_domain_share: the share of the corpus's bytes they
    # make up, the in-domain text repeated to reach it (null: as it is).
    in_domain: bool = False
    in_domain_share: float | None = Field(None, gt=0, lt=1)


class DatasetConfig(Strict):
    """One labelled dataset for fine-tuning (schema per task type: see data/README.md)."""

    task_type: TaskType
    adapter: str = "canonical"  # loader for the files' format (genpt/ingest/loaders.py)
    train: str
    dev: str | None = None  # None: `holdout` rows of train are the dev split
    holdout: int | None = Field(None, gt=0)  # dev = this many random rows of train (seed 0)
    test: str | None = None  # optional labelled held-out split: validated and leak-checked
    labels: list[str] | None = None  # class names in order; None: regression or choices
    unlabeled: list[str] = []  # globs of text files of the dataset's domain (corpus.in_domain)
    metric: Literal["accuracy", "f1", "mcc", "pearson", "spearman"] = "accuracy"

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        if isinstance(data, dict) and "finetune" in data:
            raise ValueError("`finetune` moved to the section finetune_by_dataset.NAME")
        return data

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        if self.task_type in NEEDS_LABELS and not self.labels:
            raise ValueError(f"task type {self.task_type} needs `labels`")
        if (self.dev is None) == (self.holdout is None):
            raise ValueError("set exactly one of `dev` (a file) and `holdout` (rows of train)")
        return self


class PublishConfig(Strict):
    """`genpt publish`: where model bundles go. Endpoint and credentials come from the
    environment or git-ignored config (.genpt/s3.env), never from here."""

    name: str = Field("genpt", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # models/NAME/
    bucket: str = Field("genpt-models", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    target: Literal["auto", "s3", "local"] = "auto"  # auto: s3 if configured, else local_dir
    local_dir: str = "artifacts/registry"  # the same layout without S3
    version: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # default: time+sha
    export_dir: str = "export"  # under paths.artifacts: the ONNX bundle, shipped when present
    retries: int = Field(5, ge=1)  # attempts per S3 request on transient errors
    backoff_s: float = Field(0.5, ge=0)  # first retry delay, doubled each time


class ValidateConfig(Strict):
    """Thresholds of `genpt validate` (Great Expectations suites, genpt/ingest/validation.py)."""

    min_doc_chars: int = Field(1, ge=1)  # a corpus file (document) with less text fails
    max_doc_chars: int = Field(50_000_000, gt=0)
    max_line_chars: int = Field(1_000_000, gt=0)  # longest corpus line
    max_control_rate: float = Field(1e-4, ge=0, le=1)  # control chars (not \t \n \r) per char
    max_duplicate_docs: float = Field(0.0, ge=0, le=1)  # share of files repeating another
    min_text_chars: int = Field(1, ge=0)  # per text field of a labelled row
    max_text_chars: int = Field(20_000, gt=0)
    min_choices: int = Field(2, ge=2)  # multiple choice: choices per row
    max_choices: int = Field(5, ge=2)
    max_train_dev_overlap: float = Field(0.0, ge=0, le=1)  # share of dev rows also in train
    max_corpus_overlap: float = Field(0.0, ge=0, le=1)  # share of dev rows found in the corpus
    leak_ngram: int = Field(8, ge=3)  # words per n-gram for corpus leakage
    leak_ngram_share: float = Field(0.8, gt=0, le=1)  # n-grams found in corpus -> leaked


class ExportConfig(Strict):
    """`genpt export`: ONNX models of the LM and the fine-tuned task models."""

    datasets: list[str] | None = None  # fine-tuned models to export; None: every one found
    lm: bool = True  # the pre-trained LM with a KV cache, for generation
    opset: int = Field(18, ge=17)
    optimize: bool = True  # ORT transformer fusions (gpt2) in the fp16 graph; CPU ones unfused
    fp16: bool = True  # model.fp16.onnx for the CUDA provider
    int8: bool = True  # model.int8.onnx, dynamically quantized, for CPU
    int8_op_types: list[str] = ["MatMul"]
    int8_per_channel: bool = True
    int8_reduce_range: bool = False  # 7-bit weights: for CPUs without VNNI if accuracy drops
    int8_exclude_head: bool = True  # keep the task head / LM head fp32
    parity_atol: float = Field(1e-4, gt=0)  # fp32 vs PyTorch max-abs on a real batch
    triton_max_batch_size: int = Field(32, gt=0)


class ServeConfig(Strict):
    """`genpt serve`: the model server over a bundle (genpt/serving, docs/serving.md)."""

    bundle: str | None = None  # default source: a bundle dir, registry latest or s3://.../latest
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = Field(8080, ge=0, le=65535)  # 0: a free port (printed at start)
    variant: Literal["fp32", "int8", "fp16"] = "fp32"  # the ONNX file each model runs
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # ORT intra-op threads per session (None: all cores). 1: the HTTP loop keeps a core (on
    # 2 cores, 2 threads per session made the server 1.7x slower: docs/serving.md)
    threads: int | None = Field(1, ge=1)
    poll_s: float = Field(30.0, gt=0)  # how often a `latest` source is checked for a new version
    max_backoff_s: float = Field(300.0, gt=0)  # longest wait between polls while S3 is down
    # rows per ONNX Runtime call of a task model; under the clients' count, batches alternate
    # (one runs while the HTTP loop answers the last and reads the next: docs/serving.md)
    max_batch_size: int = Field(16, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)  # how long a lone request waits for company
    # completions computed at once (the rest queue); 2: one per core here, each on 1 thread
    lm_concurrency: int = Field(2, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)  # larger requests get 413
    max_rows: int = Field(256, ge=1)  # rows per infer request
    max_tokens: int = Field(256, ge=1)  # the most a completion may ask for
    too_long: Literal["refuse", "truncate"] = "refuse"  # a text over the model's context


class ArmConfig(Strict):
    """One arm of the ablation study, compared with the product (`full`, built in: stage
    finetune@NAME). `study.arms.NAME` is a `study@DATASET-NAME` stage. Every arm searches
    the same grid (study.lrs, early stopping on the tune split): none is tuned more."""

    init: Literal["pretrained", "scratch"] = "pretrained"
    lm_coef: float | None = Field(None, ge=0)  # None: the dataset's finetune.lm_coef (lambda)
    seeds: list[int] | None = Field(None, min_length=1)  # None: study.seeds


FULL = ArmConfig()  # the product: pre-trained, lambda = finetune.lm_coef, study.seeds


class StudyConfig(Strict):
    """The protocol of the product and of GPT-1's Table 5 ablation over seeds
    (genpt/arms.py; `genpt finetune`, `genpt study`, `genpt report`)."""

    seeds: list[int] = Field([1, 2, 3], min_length=1)  # each: its own label sample and tune split
    # of each label budget: the tune split, for the lr search and early stopping
    tune_fraction: float = Field(0.2, gt=0, lt=1)
    # The lrs every arm searches on seeds[0]'s tune split; each run stops early there
    # (finetune.patience, at most finetune.epochs). The defaults are params.yaml's.
    lrs: list[float] = Field([2.5e-4, 1.0e-3], min_length=1)
    # The split the report scores: train rows outside every label budget, carved once
    # with report_seed before anything else, read only after every run has trained.
    report_rows: int = Field(500, gt=0)
    report_seed: int = 1  # 0 until 2026-12-07 (its rows were seen while choosing a grid)
    # a held-out row that (nearly) repeats a label-pool row or a corpus text: `drop` it from
    # the report rows (counted in the report) or `fail` (validate.leak_ngram/_share: "nearly")
    report_leaks: Literal["drop", "fail"] = "drop"
    # The label-efficiency curve: `full` and `scratch` at these label budgets too (every
    # seed, the lr chosen at the dataset's own budget); the report's "labels saved"
    curve: list[Annotated[int, Field(gt=0)]] = []
    # the arms compared with the product, `full` (stage finetune@NAME); one stage each
    arms: dict[str, ArmConfig] = {"scratch": ArmConfig(init="scratch")}
    zero_shot: bool = True  # multiple choice: rank answers by the pre-trained LM alone

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        for name, arm in self.arms.items():
            if name == "full":
                raise ValueError("arms.full: built in, the product (stage finetune@NAME)")
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"arm name {name!r}: use lowercase letters, digits and _")
            want = {"no_aux": "pretrained", "scratch": "scratch"}.get(name)
            if want and arm.init != want:
                raise ValueError(f"arms.{name}: init must be {want}")
        if self.arms.get("no_aux") and self.arms["no_aux"].lm_coef != 0:
            raise ValueError("arms.no_aux: lm_coef must be 0")
        return self

    def arm(self, name: str) -> ArmConfig:
        if name == "full":
            return FULL
        if name not in self.arms:
            raise ParamsError(f"unknown arm {name!r}; arms: full, {', '.join(self.arms)}")
        return self.arms[name]

    def all_arms(self) -> list[str]:
        return ["full", *self.arms]


class GateConfig(Strict):
    """`genpt publish` refuses a model below these (points: metric x 100)."""

    enabled: bool = True
    # every dataset, product metric - trivial baseline (the best constant) on the dev rows:
    # the lower bound of the 95% bootstrap interval must be above this
    min_over_baseline: float = 0.0
    # the average gain of pre-training, full - scratch (the report; needs 2+ study.seeds per
    # arm): the lower bound of the 95% interval of the primary claim must be above this;
    # None: no such check. claim: `pooled` (the gain on these datasets, the ones published;
    # rows and seeds as the noise) or `datasets` (datasets as the unit: tasks like these)
    min_pretraining_gain: float | None = 0.0
    claim: Literal["pooled", "datasets"] = "pooled"
    max_drop_vs_latest: float = 5.0  # every dataset: published `latest` - product metric


class Params(Strict):
    seed: int = 1337
    paths: PathsConfig = PathsConfig()
    corpus: CorpusConfig = CorpusConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    # dataset name -> the `finetune` keys it overrides; one entry per dataset ({}: none), as
    # dvc.yaml's finetune and study stages list `finetune_by_dataset.NAME` (a key DVC needs)
    finetune_by_dataset: dict[str, dict] = {}
    # `validate:` in params.yaml (the attribute name would shadow BaseModel.validate)
    validation: ValidateConfig = Field(ValidateConfig(), alias="validate")
    datasets: dict[str, DatasetConfig] = {}
    publish: PublishConfig = PublishConfig()
    export: ExportConfig = ExportConfig()
    study: StudyConfig = StudyConfig()
    gate: GateConfig = GateConfig()
    serve: ServeConfig = ServeConfig()

    @model_validator(mode="after")
    def _rules(self) -> Params:
        """Rules across keys, checked here rather than when the model is built: the first
        broken one, as `KEY: what is wrong` (see _describe)."""
        shape = self.model.shape(check=False)
        if shape.n_embd % shape.n_head:
            raise ValueError(
                f"model.n_embd: {shape.n_embd} is not divisible by model.n_head {shape.n_head} "
                f"(preset {self.model.preset}; attention splits n_embd across the heads)"
            )
        if (self.pretrain.seq_len or 0) > shape.n_ctx:
            raise ValueError(
                f"pretrain.seq_len: {self.pretrain.seq_len} > the model's context "
                f"n_ctx {shape.n_ctx} (preset {self.model.preset})"
            )
        tuned = {"finetune": self.finetune.model_dump()} | {
            f"finetune_by_dataset.{n}": over for n, over in self.finetune_by_dataset.items()
        }
        for key, cfg in tuned.items():
            if isinstance(cfg.get("max_len"), int) and cfg["max_len"] > shape.n_ctx:
                raise ValueError(
                    f"{key}.max_len: {cfg['max_len']} > the model's context n_ctx {shape.n_ctx}"
                )
        return self

    def finetune_for(self, name: str) -> FinetuneConfig:
        """The finetune section with dataset `name`'s overrides applied."""
        self.dataset(name)
        key, over = f"finetune_by_dataset.{name}", self.finetune_by_dataset.get(name)
        if over is None:
            raise ParamsError(f"{key}: missing; every dataset needs an entry ({{}}: no overrides)")
        try:
            return FinetuneConfig(**{**self.finetune.model_dump(), **over})
        except ValidationError as e:
            raise ParamsError(_describe(e, key)) from None

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ParamsError(f"unknown dataset {name!r}; configured: {sorted(self.datasets)}")
        return self.datasets[name]

    def artifacts(self, *parts: str) -> Path:
        return Path(self.paths.artifacts, *parts)


def _describe(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] == "value_error" and not e["loc"] and not prefix:  # Params._rules
            lines.append(str(e["ctx"]["error"]))  # already `KEY: what is wrong`
            continue
        whole = e["type"] == "extra_forbidden" or isinstance(e.get("input"), dict)
        got = "" if whole else f" (got {e.get('input')!r})"  # not a whole section
        lines.append(f"{key}: {msg}{got}")
    return "; ".join(lines)


def apply_override(raw: dict, override: str) -> None:
    """Set `a.b.c=value` in a nested dict; value parsed as YAML (so 1e-3, true, [a, b] work)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ParamsError(f"override {override!r}: expected key.path=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ParamsError(f"override {override!r}: {p} is not a section")
    node[leaf] = read_yaml(value)


def as_overrides(values: dict[str, object]) -> list[str]:
    """`key=value` overrides (DVC's `-S` syntax) of the values that are set; lists as JSON."""
    return [f"{k}={json.dumps(v) if isinstance(v, list) else v}"
            for k, v in values.items() if v is not None]  # fmt: skip


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: list[str] | None = None) -> Params:
    path = Path(path)
    raw = {}
    if path.exists():
        try:
            raw = read_yaml(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ParamsError(f"{path}: not valid YAML: {e}") from None
    elif path.name != DEFAULT_PARAMS or path.parent != Path():
        raise ParamsError(f"{path}: params file not found")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    for o in overrides or []:
        apply_override(raw, o)
    try:
        params = Params(**raw)
    except ValidationError as e:
        raise ParamsError(f"{path}: {_describe(e)}") from None
    for name in params.datasets:
        try:
            params.finetune_for(name)  # validate the per-dataset overrides now
        except ParamsError as e:
            raise ParamsError(f"{path}: {e}") from None
    return params
