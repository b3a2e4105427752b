"""Pipeline steps: each module reads its section of params.yaml, does its I/O and calls `model/`."""
