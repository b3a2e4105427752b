"""Byte-level BPE tokenizer (HF `tokenizers`), loadable as `PreTrainedTokenizerFast`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
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


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on an iterator of documents.

    No normalizer and no prefix space, so decode(encode(text)) == text for any UTF-8 text.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
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


def special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Ids of the special tokens, keyed start/delim/extract/pad/eot."""
    names = {"start": START, "delim": DELIM, "extract": EXTRACT, "pad": PAD, "eot": EOT}
    return {k: tokenizer.convert_tokens_to_ids(v) for k, v in names.items()}
