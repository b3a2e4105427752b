"""The pipeline's library and the `genpt` command (cli.py): params, artifact paths
(artifacts.py), data ingestion, bundles, the S3 stack, checks and summaries. The stages in
tasks/ and the flow in flows/ call it; only cli.py imports them."""
