"""Prefect flows composing the pipeline stages (see flows/pipeline.py)."""
