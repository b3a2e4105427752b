"""S3-compatible storage (boto3): client factory and s3:// URIs.

Endpoint and credentials come from the environment (or git-ignored config), never
from committed files: GENPT_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import os
from pathlib import Path


def endpoint_url(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("GENPT_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")


def _settings(max_attempts: int, timeouts: tuple[float, float]) -> dict:
    """botocore Config settings: path-style addressing, standard retries, timeouts."""
    return {
        "retries": {"total_max_attempts": max_attempts, "mode": "standard"},
        "s3": {"addressing_style": "path"},
        "connect_timeout": timeouts[0],
        "read_timeout": timeouts[1],
    }


def region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def s3_client(
    endpoint: str | None = None,
    max_attempts: int = 5,
    credentials: tuple[str, str] | None = None,
    timeouts: tuple[float, float] = (5, 60),
):
    """The project's one boto3 S3 client factory: path-style addressing, standard retries.

    credentials: (access key, secret) instead of the environment's; timeouts: (connect, read).
    """
    import boto3
    from botocore.config import Config

    key, secret = credentials or (None, None)
    # A fresh session: the default one caches the first credentials it finds.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url(endpoint),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=region(),
        config=Config(**_settings(max_attempts, timeouts)),
    )


def s3_filesystem(max_attempts: int = 5, timeouts: tuple[float, float] = (5, 60)):
    """The same client's settings as an fsspec filesystem (s3fs), for streamed reads of
    s3:// URLs (the corpus); credentials from the environment, as s3_client's."""
    import s3fs

    return s3fs.S3FileSystem(
        endpoint_url=endpoint_url(),
        client_kwargs={"region_name": region()},
        config_kwargs=_settings(max_attempts, timeouts),
        skip_instance_cache=True,  # a fresh one: the environment may have changed
    )


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/key -> ('bucket', 'some/key')."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r}: no bucket")
    return bucket, key


ENV_FILE = ".genpt/s3.env"  # written by `genpt stack up`; git-ignored


def load_env_file(path: str | Path = ENV_FILE) -> bool:
    """Export the KEY=VALUE lines of `path` unless already set; False if there is no file."""
    path = Path(path)
    if not path.exists():
        return False
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            os.environ.setdefault(key.strip(), value.strip())
    return True


def s3_configured() -> bool:
    """True if an endpoint or credentials are set (else publish goes to a local directory)."""
    return bool(endpoint_url() or os.environ.get("AWS_ACCESS_KEY_ID"))
