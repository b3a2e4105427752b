"""Data ingestion: the corpus (corpus.py), labelled datasets and their adapters (loaders.py),
Great Expectations suites (validation.py) on facts streamed from the corpus (scan.py),
leakage checks (leakage.py) and tokenization into token shards (tokens.py, token_inputs.py).
The stages in tasks/ call it."""
