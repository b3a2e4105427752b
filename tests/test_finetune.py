"""Fine-tuning on a real labelled set (data/finetune/authors), save/reload, metrics, early
stopping, the trivial baseline of the rows scored."""

import json

import numpy as np
import torch

from genpt import artifacts
from genpt.ingest.loaders import load_split, subsample
from genpt.params import load_params
from model import metrics
from model.finetune import encode, predict
from model.task_model import TaskModel
from model.tokenizer import load_tokenizer, special_ids
from tasks import evaluate, finetune
from tests.conftest import ROOT, copy_tokens, tiny

ONE_RUN = ["study.seeds=[1]", "study.lrs=[1.0e-3]", "study.report_rows=100"]  # one model


def test_tiny_finetune_beats_majority_and_reloads_identically(tokens, tmp_path):
    copy_tokens(tokens, tmp_path)
    p = load_params(
        ROOT / "params.yaml",
        tiny(
            tmp_path,
            *ONE_RUN,
            "finetune.init=scratch",
            "finetune.epochs=3",
            "finetune.max_len=96",
            "finetune_by_dataset.authors={}",  # the whole pool, not the default 300 labels
        ),
    )
    m = finetune.run(p, "authors")
    assert m["fit"] == round(0.8 * (1272 - 100)) and m["lr"] == 1e-3

    out = tmp_path / "finetune" / "authors"
    model, meta = TaskModel.load(out)
    tok = load_tokenizer(out)
    assert meta["labels"] == ["austen", "dickens", "twain", "stoker"]
    dev = encode(
        load_split(p.dataset("authors"), "dev"),
        "classification",
        tok,
        meta["max_len"],
        meta["labels"],
    )
    logits = predict(model, dev, special_ids(tok)["pad"])
    gold = np.array([e.label for e in dev])
    again = predict(TaskModel.load(out)[0], dev, special_ids(tok)["pad"])
    assert np.array_equal(logits, again)

    ev = evaluate.run(p, "authors")
    assert ev["accuracy"] == metrics.compute(logits, gold, False)["accuracy"]
    majority = max(np.mean(gold == c) for c in range(4))
    assert ev["accuracy"] > majority + 0.10, ev
    assert (tmp_path / "live" / "evaluate" / "authors" / "plots" / "sklearn").exists()


def test_lm_coef_zero_is_the_ablation(tokens, tmp_path):
    """lambda=0 trains on L2 only: a different model than lambda=0.5, same seed."""
    copy_tokens(tokens, tmp_path)
    common = tiny(
        tmp_path,
        *ONE_RUN,
        "finetune.init=scratch",
        "finetune.max_train_examples=32",
        "finetune.epochs=1",
        "finetune.max_len=64",
    )
    finetune.run(load_params(ROOT / "params.yaml", [*common, "finetune.lm_coef=0"]), "authors")
    a = TaskModel.load(tmp_path / "finetune" / "authors")[0].head.weight
    finetune.run(load_params(ROOT / "params.yaml", [*common, "finetune.lm_coef=0.5"]), "authors")
    b = TaskModel.load(tmp_path / "finetune" / "authors")[0].head.weight
    assert not torch.equal(a, b)


def test_metrics_against_known_values():
    pred, gold = np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 1])
    m = metrics.classification_metrics(pred, gold)
    assert m["accuracy"] == 0.8
    assert abs(m["mcc"] - 0.6666666666666666) < 1e-9
    assert abs(m["f1"] - 0.8) < 1e-9
    r = metrics.regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.5, 3.9]))
    assert r["spearman"] == 1.0 and 0.95 < r["pearson"] < 1.0


def test_predict_pads_batches_with_different_choice_counts():
    from model.config import ModelConfig
    from model.finetune import Example
    from model.gpt import build_lm
    from model.schema import missing_choice

    sp = {"start": 1, "delim": 2, "extract": 3, "pad": 4, "eot": 0}
    torch.manual_seed(0)
    model = TaskModel(
        build_lm(ModelConfig(preset="tiny", dropout=0.0), 32, sp), "multiple_choice", 1
    )
    three = Example([[1, 5, 2, 6, 3], [1, 5, 2, 7, 3], [1, 5, 2, 8, 3]], 0)
    five = Example([[1, 5, 2, 6 + i, 3] for i in range(5)], 4)
    logits = predict(model, [three, five], pad_id=4, batch_size=1)
    assert logits.shape == (2, 5)
    missing = [[False] * 3 + [True] * 2, [False] * 5]  # the one sentinel, model/schema.py
    assert missing_choice(logits).tolist() == missing and np.isfinite(logits).all()


def test_max_dev_examples_scores_one_seeded_sample_with_its_own_baseline(tokens, tmp_path):
    """finetune.max_dev_examples (quick runs): evaluate scores a seeded sample of dev rows,
    predictions.json holds just those rows, and the trivial baseline is the best constant
    on them: their majority, not the training sample's."""
    copy_tokens(tokens, tmp_path)
    over = [*ONE_RUN, "finetune.init=scratch", "finetune.epochs=1", "finetune.max_dev_examples=40"]
    over += ["finetune_by_dataset.snli.max_train_examples=16"]
    p = load_params(ROOT / "params.yaml", tiny(tmp_path, *over))
    finetune.run(p, "snli")
    ev = evaluate.run(p, "snli")
    assert ev["examples"] == 40
    labels = p.dataset("snli").labels
    want = [
        labels.index(r["label"])
        for r in subsample(load_split(p.dataset("snli"), "dev"), 40, p.seed)
    ]
    got = json.loads(artifacts.eval_predictions(p, "snli").read_text())
    assert got["gold"] == want and len(got["pred"]) == 40
    values, counts = np.unique(want, return_counts=True)
    assert got["baseline"] == values[counts.argmax()]


def test_baseline_is_the_scored_rows_majority_not_the_training_samples():
    train_gold, scored = np.array([0, 0, 0, 1]), np.array([1, 1, 0, 2, 1])
    assert metrics.constant_prediction(scored, False) == 1
    assert metrics.trivial_baseline(scored, False)["accuracy"] == 0.6
    assert metrics.constant_prediction(train_gold, False) != 1  # the old baseline's choice


def test_early_stopping_runs_past_three_epochs_then_stops_after_the_patience(monkeypatch):
    """A small synthetic task whose tune score peaks late (epoch 6): training goes on past
    the old fixed 3 epochs, stops `patience` epochs after the best, and keeps its weights."""
    from model import finetune as ft
    from model.config import FinetuneConfig, ModelConfig
    from model.finetune import Example
    from model.gpt import build_lm

    sp = {"start": 1, "delim": 2, "extract": 3, "pad": 4, "eot": 0}
    torch.manual_seed(0)
    lm = build_lm(ModelConfig(preset="tiny", dropout=0.0), 32, sp)
    model = TaskModel(lm, "classification", 2)
    rng = np.random.default_rng(0)
    data = [Example([[1, *rng.integers(5, 32, 6).tolist(), 3]], int(i % 2)) for i in range(32)]
    scores = iter([0.50, 0.55, 0.60, 0.62, 0.65, 0.70, 0.69, 0.68, 0.71, 0.72])
    weights = []  # the head after each epoch's training, in the order evaluated
    real = ft.evaluate

    def scripted(m, examples, pad, device=None):
        weights.append(m.head.weight.detach().clone())
        real(m, examples, pad, device)  # the real scoring runs too
        return {"accuracy": next(scores)}

    monkeypatch.setattr(ft, "evaluate", scripted)
    cfg = FinetuneConfig(epochs=20, patience=2, lr=1e-3, batch_size=8)
    r = ft.finetune(model, data, None, cfg, 4, seed=0, tune=data[:8], metric="accuracy")
    assert (r["best_epoch"], r["epochs"], r["steps"]) == (6, 8, 8 * 4)
    assert r["tune_curve"] == [0.50, 0.55, 0.60, 0.62, 0.65, 0.70, 0.69, 0.68]
    assert torch.equal(model.head.weight, weights[5])  # epoch 6's weights restored
