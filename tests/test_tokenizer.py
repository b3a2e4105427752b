from transformers import PreTrainedTokenizerFast

from model.tokenizer import (
    SPECIAL_TOKENS,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    train_tokenizer,
)

TRICKY = [
    "Hello, world!",
    "  leading and trailing spaces  ",
    "CRLF\r\nline\rbreaks\n\n\ttabs",
    "naïve café — “quotes” 日本語 テキスト 🎉🧪",
    "NUL\x00 and control \x07\x1b chars",
    "text that mentions <|start|> and <|extract|> literally",
    "",
]


def _corpus(n_chars: int = 200_000) -> str:
    return open("data/corpus/tinyshakespeare.txt", encoding="utf-8").read()[:n_chars]


def test_roundtrip_exact_and_specials(tmp_path):
    tok = train_tokenizer([_corpus()], vocab_size=600)
    assert len(tok) <= 600
    for text in TRICKY:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    sp = special_ids(tok)
    assert len(set(sp.values())) == len(SPECIAL_TOKENS)
    assert tok("<|delim|>", add_special_tokens=False)["input_ids"] == [sp["delim"]]

    save_tokenizer(tok, tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    again = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    for text in TRICKY:
        assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert special_ids(load_tokenizer(tmp_path / "tokenizer.json")) == sp


def test_deterministic():
    a = train_tokenizer([_corpus(50_000)], vocab_size=400)
    b = train_tokenizer([_corpus(50_000)], vocab_size=400)
    assert a.get_vocab() == b.get_vocab()
