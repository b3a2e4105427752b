"""Byte-level BPE tokenizer (HF `tokenizers`), loadable as `PreTrainedTokenizerFast`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# The paper's added tokens (start, delimiter $, extract) plus padding and a
# document separator for pre-training shards.
START, DELIM, EXTRACT, PAD, EOT = (
    "<|start|>",
    "<|delim|>",
    "<|extract|>",
    "<|pad|>",
    "<|endoftext|>",
)
SPECIAL_TOKENS = [EOT, START, DELIM, EXTRACT, PAD]

# Pre-tokenization: GPT-2's split (ByteLevel(use_regex=True)) ends in `\s+(?!\S)|\s+`,
# which leaves the last space of a run for the next word. SPLIT drops that look-ahead:
# a whitespace run is one piece. Without look-around, tiktoken's regex runs ~3x faster.
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"""


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on an iterator of documents.

    No normalizer and no prefix space, so decode(encode(text)) == text for any UTF-8 text.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=START,
        eos_token=EOT,
        pad_token=PAD,
        sep_token=DELIM,
        cls_token=EXTRACT,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> None:
    """Writes tokenizer.json plus the transformers side files into out_dir."""
    tokenizer.save_pretrained(str(out_dir))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load from a directory written by save_tokenizer, or a bare tokenizer.json."""
    path = Path(path)
    if path.is_file():
        return wrap(Tokenizer.from_file(str(path)))
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path}: no tokenizer.json (run `genpt tokenize` first)")
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    moved = [b for b in range(256) if b not in keep]
    return {chr(b): b for b in keep} | {chr(256 + i): b for i, b in enumerate(moved)}


def split_pattern(tokenizer: PreTrainedTokenizerFast) -> str | None:
    """The regex of a byte-level pre-tokenizer, as trained here or GPT-2's; else None."""
    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex"):
        return GPT2_SPLIT
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if [s["type"] for s in steps] == ["Split", "ByteLevel"] and not steps[1]["use_regex"]:
        split = steps[0]
        if split["behavior"] == "Isolated" and not split["invert"]:
            return split["pattern"].get("Regex")
    return None


def fast_encoder(tokenizer: PreTrainedTokenizerFast):
    """The same BPE as a `tiktoken.Encoding`, for bulk encoding; None if not byte-level BPE.

    Token ids are the ranks: the BPE trainer numbers each merged token in merge order, so
    tiktoken's lowest-rank-first merging follows the same merges. Callers should still
    compare a sample against `tokenizer` (tasks/tokenize.py does).
    """
    import tiktoken

    pattern = split_pattern(tokenizer)
    if pattern is None or tokenizer.backend_tokenizer.normalizer is not None:
        return None
    special = {t.content: i for i, t in tokenizer.added_tokens_decoder.items()}
    byte_of = _byte_of_char()
    ranks = {
        bytes(byte_of[c] for c in token): i
        for token, i in tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False).items()
    }
    return tiktoken.Encoding(
        "genpt", pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
    )


def token_dtype(vocab_size: int) -> np.dtype:
    """The dtype of token ids in shards: uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Ids of the special tokens, keyed start/delim/extract/pad/eot."""
    names = {"start": START, "delim": DELIM, "extract": EXTRACT, "pad": PAD, "eot": EOT}
    return {k: tokenizer.convert_tokens_to_ids(v) for k, v in names.items()}
