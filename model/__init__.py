"""genpt's ML engine: tokenizer, GPT backbone, pre-training (L1) and fine-tuning (L3).

Pure ML: no Prefect, no S3. Pipeline steps live in `tasks/`.
"""
