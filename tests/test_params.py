import pytest

from genpt.params import ParamsError, load_params
from tests.conftest import ROOT

P = ROOT / "params.yaml"


def test_repo_params_load():
    p = load_params(P)
    assert p.finetune.lm_coef == 0.5 and p.model.preset in ("tiny", "small", "gpt1")
    assert p.datasets, "the default data needs at least one labelled dataset"


@pytest.mark.parametrize(
    "override, message",
    [
        ("pretrain.lrr=1", "pretrain.lrr: unknown key"),
        ("pretrain.lr=fast", "pretrain.lr: Input should be a valid number"),
        ("pretrain.steps=1.5", "pretrain.steps: Input should be a valid integer"),
        ("model.preset=huge", "model.preset: Input should be 'tiny', 'small' or 'gpt1'"),
        ("finetune.lm_coef=-1", "finetune.lm_coef: Input should be greater than or equal to 0"),
        ("finetune_by_dataset.authors.lr=x", "finetune_by_dataset.authors.lr"),
        ("finetune_by_dataset.authors.lrr=1", "finetune_by_dataset.authors.lrr: unknown key"),
        (  # DVC's finetune and study stages list finetune_by_dataset.NAME for every dataset
            "datasets.new={task_type: similarity, train: t.jsonl, dev: d.jsonl}",
            "params.yaml: finetune_by_dataset.new: missing",
        ),
        ("datasets.authors.finetune={lr: 1}", "moved to the section finetune_by_dataset.NAME"),
        ("datasets.authors.labels=null", "needs `labels`"),
        ("nonsense", "expected key.path=value"),
        ("pretrain.nproc_per_node=0", "pretrain.nproc_per_node"),
        ("pretrain.nproc_per_node=many", "pretrain.nproc_per_node"),
        ("pretrain.nnodes=2", "nnodes > 1 needs rdzv_endpoint"),
        (
            "pretrain={nnodes: 2, rdzv_endpoint: 'h:29400', rdzv_backend: static}",
            "rdzv_backend static needs node_rank",
        ),
        # rules across keys, once checked only when the model was built or trained
        ("model.n_embd=65", "params.yaml: model.n_embd: 65 is not divisible by model.n_head 4"),
        ("model.n_head=5", "params.yaml: model.n_embd: 128 is not divisible by model.n_head 5"),
        ("pretrain.seq_len=4096", "params.yaml: pretrain.seq_len: 4096 > the model's context"),
        ("finetune.max_len=4096", "params.yaml: finetune.max_len: 4096 > the model's context"),
        (
            "finetune_by_dataset.authors.max_len=4096",
            "params.yaml: finetune_by_dataset.authors.max_len: 4096 > the model's context",
        ),
    ],
)
def test_bad_params_name_the_key(override, message):
    with pytest.raises(ParamsError, match=None) as e:
        load_params(P, [override])
    assert message in str(e.value)


def test_overrides_and_yaml_floats(tmp_path):
    p = load_params(
        P, ["pretrain.lr=3e-4", "model.preset=tiny", "finetune_by_dataset.authors.lr=1e-3"]
    )
    assert p.pretrain.lr == 3e-4 and p.model.preset == "tiny"
    assert p.finetune_for("authors").lr == 1e-3 and p.finetune.lr != 1e-3
    bad = tmp_path / "p.yaml"
    bad.write_text("pretrain:\n  steps: [1\n")
    with pytest.raises(ParamsError, match="p.yaml: not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


@pytest.fixture
def no_model_built(monkeypatch):
    """Every way pretrain reaches an artifact or the model fails the test if taken."""
    import tasks.pretrain as stage

    class Tripwire:
        def __call__(self, *a, **k):
            raise AssertionError("an artifact was read or the model was built")

        def __getattr__(self, name):  # artifacts_check.tokenizer(...), ...
            return self

    for name in ("build_lm", "load_tokenizer", "load_shards", "artifacts_check"):
        monkeypatch.setattr(stage, name, Tripwire())


def test_bad_shape_is_a_params_error_before_any_work(no_model_built, tmp_path, capsys):
    """`genpt pretrain -S model.n_embd=65` (4 heads): one line naming the key, exit 2."""
    from genpt import cli

    art = tmp_path / "art"
    argv = ["genpt", "pretrain", "-p", str(P), "-S", f"paths.artifacts={art}",
            "-S", "model.n_embd=65", "-S", "model.n_head=4"]  # fmt: skip
    with pytest.MonkeyPatch.context() as m:
        m.setattr("sys.argv", argv)
        with pytest.raises(SystemExit) as e:
            cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.splitlines() == [
        f"error: {P}: model.n_embd: 65 is not divisible by model.n_head 4 "
        "(preset tiny; attention splits n_embd across the heads)"
    ]
    assert not art.exists()


def test_every_recipe_is_valid_params():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    recipes = sorted((root / "recipes").glob("*.yaml"))
    assert recipes
    for r in recipes:
        p = load_params(r)
        assert p.study.all_arms()[0] == "full" and "scratch" in p.study.all_arms(), r
    story = load_params(root / "recipes/cpu-hour.yaml").dataset("story_cloze")
    assert story.dev is None and story.holdout == 374
