"""Data ingestion: the corpus (corpus.py), labelled datasets and their adapters (loaders.py),
Great Expectations suites (validation.py), leakage checks (leakage.py) and tokenization
into token shards (tokens.py). The stages in tasks/ call it."""
