"""Stage `evaluate`: a fine-tuned model on its dev split -> metrics, confusion matrix
(regression scores binned to 0.5), and each row's prediction beside the trivial
baseline's, the best constant on the rows scored (the quality gate's paired bootstrap
reads them)."""

from __future__ import annotations

import json

import numpy as np

from genpt import artifacts, artifacts_check
from genpt.ingest.loaders import load_split, subsample
from genpt.io import atomic_write_text, live, write_json
from genpt.params import Params
from model import metrics as M
from model.finetune import encode, predict
from model.task_model import HEAD_FILE, TASK_FILE, TaskModel
from model.tokenizer import load_tokenizer, special_ids


def run(params: Params, name: str) -> dict:
    ds = params.dataset(name)
    src = artifacts.finetune(params, name)
    artifacts_check.hf_model(src, f"re-run `genpt finetune {name}`", also=(TASK_FILE, HEAD_FILE))
    rows = subsample(load_split(ds, "dev"), params.finetune_for(name).max_dev_examples, params.seed)
    model, meta = TaskModel.load(src)
    tok = load_tokenizer(src)
    examples = encode(rows, ds.task_type, tok, meta["max_len"], ds.labels)
    logits = predict(model, examples, special_ids(tok)["pad"])
    gold = np.array([e.label for e in examples])
    pred = logits.reshape(-1) if model.regression else logits.argmax(-1)
    result = {"examples": len(examples), **M.compute(logits, gold, model.regression)}
    lv = live(artifacts.live_evaluate(params, name))
    for k, v in result.items():
        lv.log_metric(k, v, plot=False)
    # A confusion matrix for every task type; regression scores are binned to 0.5 first.
    if model.regression:
        actual, predicted = (np.round(v * 2) / 2 for v in (gold, pred))
        actual, predicted = [f"{v:.1f}" for v in actual], [f"{v:.1f}" for v in predicted]
    else:
        names = ds.labels or [str(i) for i in range(logits.shape[-1])]
        actual, predicted = [names[i] for i in gold], [names[i] for i in pred]
    lv.log_sklearn_plot("confusion_matrix", actual, predicted, name="confusion_matrix.json")
    lv.end()
    write_predictions(params, name, gold, pred, M.constant_prediction(gold, model.regression))
    write_json(artifacts.eval_metrics(params, name), result)
    return result


def write_predictions(params: Params, name: str, gold, pred, baseline: float) -> None:
    """eval/NAME/predictions.json: per dev row the gold label and the model's prediction
    (class or choice index, or score), and the trivial baseline's one constant prediction."""
    rows = {"gold": np.asarray(gold).tolist(), "pred": np.asarray(pred).tolist()}
    text = json.dumps({**rows, "baseline": baseline})  # one line: a few thousand rows at most
    atomic_write_text(artifacts.eval_predictions(params, name), text + "\n")
