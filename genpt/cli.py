"""`genpt`: the one command line for every pipeline step.

Every command reads params.yaml (or --params) and accepts DVC-style overrides:
`--set pretrain.steps=100 --set model.preset=tiny`.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from genpt import logs, offline

offline.apply(TOKENIZERS_PARALLELISM="true")
logs.quiet_third_party()

app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)


@app.callback()
def _root(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help=f"full output of every stage and library (= {logs.ENV}=DEBUG)"
        ),
    ] = False,
) -> None:
    if verbose:
        os.environ[logs.ENV] = "DEBUG"  # inherited by the stages DVC starts
    logs.level()  # a bad GENPT_LOG_LEVEL fails here, before any work


ParamsOpt = Annotated[str, typer.Option("--params", "-p", help="params file to read")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-S", help="override a param, e.g. -S pretrain.lr=3e-4 (repeatable)"),
]


def _params(path: str, overrides: list[str] | None):
    from genpt.params import load_params

    return load_params(path, overrides or [])


def _print(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True))


def _names(params, names: list[str] | None) -> list[str]:
    names = names or list(params.datasets)
    for n in names:
        params.dataset(n)  # unknown names fail before any work
    return names


@app.command()
def validate(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:
    """Validate the corpus and labelled datasets (Great Expectations); writes validate/."""
    from tasks import validate as stage

    _print(stage.run(_params(params, set_)))


@app.command()
def unlabeled(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:
    """Unlabeled in-domain text for the corpus (corpus.in_domain): each dataset's label pool
    without labels, and its `unlabeled` files; writes unlabeled/."""
    from tasks import unlabeled as stage

    _print(stage.run(_params(params, set_)))


@app.command()
def tokenize(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:
    """Train the BPE tokenizer on the corpus and write token shards."""
    from tasks import tokenize as stage

    _print(stage.run(_params(params, set_)))


@app.command()
def pretrain(
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="continue from pretrain/ckpt.pt")] = False,
    auto_resume: Annotated[
        bool, typer.Option(help="resume only a checkpoint of the same params/data/code (dvc)")
    ] = False,
    worker: Annotated[bool, typer.Option(hidden=True, help="a rank the stage launched")] = False,
    stop_after: Annotated[int | None, typer.Option(hidden=True, help="tests: stop early")] = None,
) -> None:
    """Pre-train the LM (L1). Data-parallel with -S pretrain.nproc_per_node=N (auto: every GPU).

    More than one process (pretrain.nproc_per_node x pretrain.nnodes) launches torchrun;
    see docs/distributed.md. Global rank 0 writes the checkpoint, hf/ and metrics.
    """
    from tasks import pretrain as stage

    p = _params(params, set_)
    if auto_resume:
        from genpt.launch import world_size
        from genpt.resume import prepare

        resume = prepare(p, world_size(p.pretrain))
    metrics = stage.run(p, resume=resume, stop_after=stop_after)
    from model.device import rank

    if not worker and rank() == 0:  # the launcher prints, not its ranks
        _print(metrics)


@app.command()
def finetune(
    names: Annotated[list[str] | None, typer.Argument(help="datasets (default: all)")] = None,
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    init: Annotated[
        str | None,
        typer.Option(
            help="pretrained | scratch (the no-pre-training ablation); default from params"
        ),
    ] = None,
    lm_coef: Annotated[
        float | None,
        typer.Option(help="lambda in L3 = L2 + lambda*L1 (0: the ablation); default from params"),
    ] = None,
) -> None:
    """Fine-tune the product on labelled datasets (L3 = L2 + lambda * L1) by the study's
    protocol (its `full` arm); also writes study/NAME/full.json."""
    from genpt.params import as_overrides
    from tasks import finetune as stage

    extra = [*(set_ or []), *as_overrides({"finetune.init": init, "finetune.lm_coef": lm_coef})]
    p = _params(params, extra)
    _print({n: stage.run(p, n) for n in _names(p, names)})


@app.command()
def evaluate(
    names: Annotated[list[str] | None, typer.Argument(help="datasets (default: all)")] = None,
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
) -> None:
    """Evaluate fine-tuned models on their dev splits."""
    from tasks import evaluate as stage

    p = _params(params, set_)
    _print({n: stage.run(p, n) for n in _names(p, names)})


@app.command()
def study(
    name: Annotated[str, typer.Argument(help="dataset")],
    arm: Annotated[
        str,
        typer.Argument(
            help="full (the product's, without saving it) or an arm "
            "of study.arms: scratch | no_aux | ..."
        ),
    ],
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
) -> None:
    """One arm of the ablation on one dataset over study.seeds; writes study/NAME/ARM.json."""
    from tasks import study as stage

    p = _params(params, set_)
    _names(p, [name])
    _print(stage.run(p, name, arm))


@app.command()
def report(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:
    """The ablation report (GPT-1 Table 5): tables, gains with 95% intervals, chart."""
    from tasks import report as stage

    out = stage.run(_params(params, set_))
    typer.echo(out["markdown"])


@app.command()
def gate(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:
    """The quality gate (params `gate:`): exit 2, naming each failed check, if the model fails."""
    from tasks import gate as stage

    _print(stage.run(_params(params, set_)))


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="text to continue")] = "",
    model: Annotated[str | None, typer.Option(help="HF model dir (default: pretrain/hf)")] = None,
    bundle: Annotated[
        str | None,
        typer.Option(
            help="run the exported LM (ONNX Runtime) from a bundle: dir or s3://.../NAME/VERSION|latest"
        ),
    ] = None,
    variant: Annotated[str, typer.Option(help="bundle model: fp32 | int8 | fp16")] = "fp32",
    device: Annotated[str, typer.Option(help="bundle model: auto | cpu | cuda")] = "auto",
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 64,
    greedy: Annotated[bool, typer.Option(help="argmax decoding")] = False,
    temperature: Annotated[float, typer.Option(min=1e-4)] = 1.0,
    top_k: Annotated[int | None, typer.Option(min=1, help="sample from the k likeliest")] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="nucleus sampling")] = None,
    cache: Annotated[bool, typer.Option(help="use the KV cache")] = True,
    seed: int = 0,
) -> None:
    """Continue a prompt with the pre-trained LM (PyTorch, or an exported bundle)."""
    if bundle:
        from genpt import serve

        kw = dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        typer.echo(
            serve.generate(bundle, prompt, variant, device, max_new_tokens=max_new_tokens, **kw)
        )
        return
    from transformers import AutoModelForCausalLM

    from genpt import artifacts
    from genpt.artifacts_check import PRETRAIN, hf_model
    from model.generate import generate as gen
    from model.tokenizer import load_tokenizer

    src = model or str(artifacts.pretrain_hf(_params(params, set_)))
    hf_model(Path(src), "pass --model a dir written by save_pretrained" if model else PRETRAIN)
    tok, lm = load_tokenizer(src), AutoModelForCausalLM.from_pretrained(src)
    typer.echo(gen(lm, tok, prompt, max_new_tokens, temperature, top_k, top_p, greedy, cache, seed))


@app.command()
def export(
    names: Annotated[
        list[str] | None, typer.Argument(help="fine-tuned datasets (default: export.datasets)")
    ] = None,
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    triton: Annotated[
        str | None, typer.Option(help="also write a Triton model repository to this dir")
    ] = None,
) -> None:
    """Export the LM and fine-tuned models to ONNX (fp32, fp16, int8) under artifacts/export."""
    from genpt.params import as_overrides
    from tasks import export as stage

    extra = [*(set_ or []), *as_overrides({"export.datasets": names or None})]
    _print(stage.run(_params(params, extra), triton=triton))


@app.command()
def predict(
    input: Annotated[str, typer.Argument(help="JSONL of canonical records (no labels needed)")],
    bundle: Annotated[
        str, typer.Option(help="bundle: dir or s3://BUCKET/models/NAME/VERSION|latest")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL out")] = "predictions.jsonl",
    model: Annotated[
        str | None, typer.Option(help="model in the bundle (default: its only one)")
    ] = None,
    variant: Annotated[str, typer.Option(help="fp32 | int8 | fp16")] = "fp32",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
) -> None:
    """Batch predictions with ONNX Runtime: JSONL in, JSONL out (each row + prediction)."""
    from genpt import serve

    _print(serve.predict(bundle, input, output, model, variant, device, batch_size))


@app.command()
def serve(
    bundle: Annotated[
        str | None,
        typer.Option(
            help="bundle: dir, registry models/NAME/latest, or s3://BUCKET/models/NAME/VERSION"
            "|latest (a latest source is polled and hot-reloaded); default: serve.bundle"
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="bind address (default serve.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default serve.port)")] = None,
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
) -> None:
    """Serve a bundle: task models over the Open Inference Protocol v2 (/v2/models/NAME/infer),
    the LM over OpenAI completions (/v1/completions), health, readiness and /metrics."""
    from genpt.errors import GenptError
    from genpt.serving import app as server

    cfg = _params(params, set_).serve
    cfg = cfg.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v})
    src = bundle or cfg.bundle
    if not src:
        raise GenptError("no bundle: pass --bundle or set serve.bundle")
    server.serve(cfg, src)


@app.command()
def pipeline(
    params: Annotated[
        str,
        typer.Option(
            "--params",
            "-p",
            help="params for this run: the workspace's params.yaml (default), or another "
            "file such as a recipe, applied for the run; params.yaml is restored after it",
        ),
    ] = "params.yaml",
    set_: SetOpt = None,
    preset: Annotated[str | None, typer.Option(help="model.preset (tiny|small|gpt1)")] = None,
    lm_coef: Annotated[float | None, typer.Option(help="finetune.lm_coef (lambda)")] = None,
    steps: Annotated[int | None, typer.Option(help="pretrain.steps")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option(help="run only this dataset's stages (repeatable)")
    ] = None,
    force: Annotated[bool, typer.Option(help="rerun every stage, even if up to date")] = False,
) -> None:
    """Run every dvc.yaml stage in order as a Prefect flow (flows/pipeline.py); end with a
    summary (also `genpt status`).

    --set/--preset/--steps/--lm-coef and -p FILE apply to this run only: params.yaml is
    written for the run's stages to read (as `dvc exp run -S` does) and restored after
    it. Each stage runs as its own task with DVC; its full output goes to the Prefect
    log (and the console with -v). Without PREFECT_API_URL the flow runs on Prefect's
    ephemeral server.
    """
    path = Path(params)
    if not path.is_file():
        raise typer.BadParameter(f"{path}: no such file", param_hint="--params")
    own = path.name == "params.yaml"

    # the server's first start migrates its database: slow on a loaded machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.server import ephemeral_api, settle

    server = ephemeral_api()  # without an API URL: boots while the flow's code is imported
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import StageFailed, WorkspaceBusy
    from flows.pipeline import pipeline as flow

    if not logs.verbose():  # Prefect's lines stay in its API log; errors are printed below
        logs.console_without("prefect")
    try:
        with temporary_settings({PREFECT_API_URL: server.wait()} if server else {}):
            state = flow(
                preset=preset,
                lm_coef=lm_coef,
                steps=steps,
                datasets=dataset,
                overrides=set_,
                force=force,
                workspace=str(path.parent) if own else ".",
                params_file=None if own else str(path),
                return_state=True,
            )
            if server:  # the server records the run's last events before it stops
                settle(state.state_details.flow_run_id)
        out = state.result()  # a failed run raises its error here
    except (StageFailed, WorkspaceBusy) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    typer.echo(out["summary"])


@app.command()
def status(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:
    """The last pipeline run's summary: stages, pre-training, datasets, gate, bundle."""
    from genpt import summary

    typer.echo(summary.render(_params(params, set_)))


@app.command()
def publish(
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    version: Annotated[str | None, typer.Option(help="default: UTC time + git sha")] = None,
    target: Annotated[
        str | None, typer.Option(help="auto | s3 | local (default: publish.target)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="publish even if the quality gate fails (recorded in the manifest)")
    ] = False,
) -> None:
    """Upload the model bundle to s3://BUCKET/models/NAME/VERSION/ (or publish.local_dir).

    The quality gate (params `gate:`) runs first: a model that fails it is not published.
    """
    from tasks import publish as stage

    _print(stage.run(_params(params, set_), version=version, target=target, force=force))


@app.command()
def fetch(
    dest: Annotated[str, typer.Argument(help="directory to download into")],
    version: Annotated[str | None, typer.Option(help="default: latest")] = None,
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    target: Annotated[str | None, typer.Option(help="auto | s3 | local")] = None,
) -> None:
    """Download a published bundle and verify every file against its manifest."""
    from tasks import publish as stage

    m = stage.fetch(_params(params, set_), dest, version=version, target=target)
    _print({"name": m["name"], "version": m["version"], "files": len(m["files"]), "dest": dest})


registry_app = typer.Typer(help="The published versions in the registry (S3 or local_dir).")
app.add_typer(registry_app, name="registry")
TargetOpt = Annotated[str | None, typer.Option(help="auto | s3 | local (default: publish.target)")]


@registry_app.command("list")
def registry_list(
    params: ParamsOpt = "params.yaml", set_: SetOpt = None, target: TargetOpt = None
) -> None:
    """Every published version (complete: its manifest and every file it lists), `latest`
    marked, and how many objects no version owns (see `genpt registry gc`)."""
    from genpt import bundle
    from genpt.bundle.inventory import inventory

    store = bundle.registry_store(_params(params, set_).publish, target)
    inv = inventory(store)
    typer.echo(f"{store.uri}/models ({store.kind}: {store.why})")
    for v in inv.versions:
        damaged = f", {v.missing} MISSING" if v.missing else ""
        mark = "  latest" if v.latest else ""
        typer.echo(f"  {v.name}/{v.version}  {v.created or '?'}  {v.files} files{damaged}{mark}")
    if not inv.versions:
        typer.echo("  no versions")
    if inv.orphans:
        typer.echo(
            f"{len(inv.orphans)} object(s) outside any complete version: `genpt registry gc`"
        )


@registry_app.command("gc")
def registry_gc(
    params: ParamsOpt = "params.yaml",
    set_: SetOpt = None,
    target: TargetOpt = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="remove them (default: a dry run)")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only list them (the default)")
    ] = False,
    min_age: Annotated[
        float,
        typer.Option(
            help="seconds: keep a version's orphans younger than this (an upload "
            "may still be running)",
            min=0,
        ),
    ] = 3600,
) -> None:
    """The objects under models/ that no complete version owns (a failed upload's, a
    version's unlisted files): listed, and removed with --delete."""
    from genpt import bundle
    from genpt.bundle.inventory import gc

    if delete and dry_run:
        raise typer.BadParameter("--delete or --dry-run, not both", param_hint="--delete")
    store = bundle.registry_store(_params(params, set_).publish, target)
    old, young = gc(store, delete=delete, min_age_s=min_age)
    for k in old:
        typer.echo(f"{'deleted' if delete else 'orphan'}  {store.uri}/{k.key}  {k.bytes} bytes")
    verb = "deleted" if delete else "would delete (dry run; --delete removes them)"
    typer.echo(
        f"{len(old)} orphan object(s) {verb}, {sum(k.bytes for k in old):,} bytes"
        + (f"; {len(young)} younger than {min_age:g} s kept" if young else "")
    )


stack_app = typer.Typer(help="A local S3-compatible store (SeaweedFS) for DVC and publish.")
app.add_typer(stack_app, name="stack")
StateOpt = Annotated[str, typer.Option(help="weed data, credentials, pid")]


@stack_app.command("up")
def stack_up(
    state_dir: StateOpt = ".genpt/stack",
    port: Annotated[int | None, typer.Option(help="S3 port (default: a free one)")] = None,
) -> None:
    """Start SeaweedFS on 127.0.0.1, create the buckets, write .genpt/s3.env + .dvc/config.local."""
    from genpt.stack import seaweedfs as stack

    s = stack.up(state_dir, port=port)
    stack.write_client_config(s)
    _print({**stack.status(state_dir), "env_file": str(stack.ENV_FILE)})


@stack_app.command("down")
def stack_down(state_dir: StateOpt = ".genpt/stack") -> None:
    """Stop the store (by pid; SIGKILL after a short grace period). Data stays in STATE_DIR."""
    from genpt.stack import seaweedfs as stack

    _print({"stopped": stack.down(state_dir)})


@stack_app.command("status")
def stack_status(state_dir: StateOpt = ".genpt/stack") -> None:
    """Is the store running, and where."""
    from genpt.stack import seaweedfs as stack

    _print(stack.status(state_dir))


def main() -> None:
    from genpt.errors import GenptError

    try:
        app()
    except (GenptError, FileNotFoundError) as e:
        if logs.verbose():  # the cause, for a bug report
            traceback.print_exc()
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
