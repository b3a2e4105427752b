import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.gpt import build_lm
from model.inputs import collate, entailment, multiple_choice, similarity
from model.schema import MISSING_CHOICE, missing_choice
from model.task_model import TaskModel

SP = {"start": 1, "delim": 2, "extract": 3, "pad": 4, "eot": 0}
V = 64


def lm(arch="gpt2", seed=0):
    torch.manual_seed(seed)
    return build_lm(ModelConfig(preset="tiny", arch=arch, dropout=0.0), V, SP)


def rand_ids(g, n):
    return torch.randint(5, V, (n,), generator=g).tolist()


@pytest.mark.parametrize("arch", ["gpt2", "gpt1"])
def test_output_projection_is_token_embedding(arch):
    m = lm(arch)
    assert m.get_output_embeddings().weight is m.get_input_embeddings().weight
    assert m.lm_head.weight.data_ptr() == m.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("arch", ["gpt2", "gpt1"])
def test_l3_is_l2_plus_lambda_l1_by_hand(arch):
    g = torch.Generator().manual_seed(1)
    ex = [entailment(rand_ids(g, n), rand_ids(g, 4), SP, 32) for n in (3, 9, 6)]
    batch = collate(ex, "entailment", SP["pad"])
    labels = torch.tensor([0, 2, 1])
    model = TaskModel(lm(arch), "entailment", num_labels=3).eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]

    logits, l2_only = model(ids, mask, labels, lm_coef=0.0)
    _, l3 = model(ids, mask, labels, lm_coef=0.5)

    # By hand: L2 from the task logits; L1 from the bare LM over real tokens only.
    l2 = F.cross_entropy(logits, labels)
    lm_logits = model.lm(input_ids=ids, attention_mask=mask).logits
    nll, count = 0.0, 0
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        nll += F.cross_entropy(lm_logits[b, : n - 1], ids[b, 1:n], reduction="sum")
        count += n - 1
    l1 = nll / count
    assert torch.allclose(l2_only, l2, atol=1e-6)
    assert torch.allclose(l3, l2 + 0.5 * l1, atol=1e-5)
    assert not torch.allclose(l3, l2, atol=1e-3)


def test_extract_token_state_ignores_padding():
    g = torch.Generator().manual_seed(2)
    (seq,) = entailment(rand_ids(g, 5), rand_ids(g, 3), SP, 32)
    model = TaskModel(lm(), "entailment", 3).eval()
    alone = model(**collate([[seq]], "entailment", SP["pad"]))[0]
    longer = [1, *rand_ids(g, 14), 3]  # forces padding of the first row
    padded = model(**collate([[seq], [longer]], "entailment", SP["pad"]))[0][:1]
    assert torch.allclose(alone, padded, atol=1e-5)


@pytest.mark.parametrize("num_labels", [1, 2])
def test_similarity_symmetric(num_labels):
    g = torch.Generator().manual_seed(3)
    a, b = rand_ids(g, 7), rand_ids(g, 4)
    model = TaskModel(lm(), "similarity", num_labels).eval()
    ab = model(**collate([similarity(a, b, SP, 32)], "similarity", SP["pad"]))[0]
    ba = model(**collate([similarity(b, a, SP, 32)], "similarity", SP["pad"]))[0]
    assert torch.allclose(ab, ba, atol=1e-6)
    assert model.regression == (num_labels == 1)


def test_multiple_choice_softmax_over_answers_with_missing_choice():
    g = torch.Generator().manual_seed(4)
    ctx, q = rand_ids(g, 6), rand_ids(g, 2)
    ex3 = multiple_choice(ctx, q, [rand_ids(g, 2), rand_ids(g, 3), rand_ids(g, 1)], SP, 32)
    ex2 = multiple_choice(ctx, q, [rand_ids(g, 2), rand_ids(g, 2)], SP, 32)
    model = TaskModel(lm(), "multiple_choice", num_labels=99).eval()
    assert model.head.out_features == 1  # one shared scalar head
    batch = collate([ex3, ex2], "multiple_choice", SP["pad"])
    logits, loss = model(**batch, labels=torch.tensor([1, 0]), lm_coef=0.5)
    assert logits.shape == (2, 3)
    assert torch.isfinite(loss)
    assert logits[1, 2].item() == MISSING_CHOICE  # the one sentinel (model/schema.py)
    assert missing_choice(logits.detach().numpy()).tolist() == [[False] * 3, [False, False, True]]
    solo = model(**collate([ex2], "multiple_choice", SP["pad"]))[0]
    assert torch.allclose(solo, logits[1:, :2], atol=1e-5)


def test_save_and_load_give_identical_logits(tmp_path):
    g = torch.Generator().manual_seed(5)
    batch = collate([[[1, *rand_ids(g, 8), 3]], [[1, *rand_ids(g, 3), 3]]], "classification", 4)
    model = TaskModel(lm(), "classification", 4).eval()
    model.save(tmp_path, extra={"labels": ["a", "b", "c", "d"]})
    again, meta = TaskModel.load(tmp_path)
    assert meta["labels"] == ["a", "b", "c", "d"] and meta["task_type"] == "classification"
    assert torch.equal(model(**batch)[0], again(**batch)[0])
