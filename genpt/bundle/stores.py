"""Key-value stores for bundles: a local directory or one S3 bucket (the client of
genpt/stack/storage.py).

Both offer check, put_file, put_bytes, get_bytes (None if absent), get_file, delete and
keys (every key under a prefix, with its size and modification time). S3 calls
retry transient errors with exponential backoff; bad credentials, a missing bucket or an
unreachable endpoint end in a RegistryError that names the endpoint and bucket, never a
secret.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from genpt.errors import GenptError
from genpt.stack import storage

# S3 error codes worth retrying; anything else is permanent.
TRANSIENT = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
             "RequestTimeout", "Throttling", "RequestTimeTooSkewed"}  # fmt: skip
AUTH = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
        "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}  # fmt: skip


class RegistryError(GenptError, RuntimeError):
    """The registry refused or could not complete a request; the message says why."""


class StoredKey(NamedTuple):
    key: str
    bytes: int
    mtime: float  # seconds since the epoch


class LocalStore:
    """Keys are files under `root`; each write is a temp file + rename."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.uri = str(self.root)
        self.kind, self.why = "local", ""  # why: set by open_store

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def put_file(self, key: str, path: Path) -> None:
        dst = self.root / key
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            self.put_file(key, Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def get_file(self, key: str, dst: Path) -> None:
        if not (self.root / key).is_file():
            raise RegistryError(f"{self.root / key}: missing")
        shutil.copyfile(self.root / key, dst)

    def delete(self, key: str) -> None:
        """Remove a key, and the directories it leaves empty below the root."""
        path = self.root / key
        path.unlink(missing_ok=True)
        for d in path.parents:
            if d == self.root or not d.is_relative_to(self.root) or any(d.iterdir()):
                break
            d.rmdir()

    def keys(self, prefix: str) -> list[StoredKey]:
        base = self.root / prefix
        found = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        return [StoredKey(p.relative_to(self.root).as_posix(), p.stat().st_size,
                          p.stat().st_mtime) for p in found]  # fmt: skip


class S3Store:
    """One bucket on an S3-compatible endpoint."""

    def __init__(self, bucket: str, retries: int = 5, backoff_s: float = 0.5, client=None):
        self.bucket, self.retries, self.backoff_s = bucket, retries, backoff_s
        self.endpoint = storage.endpoint_url() or "AWS S3"
        self.uri = f"s3://{bucket}"
        self.kind, self.why = "s3", ""
        self.client = client or storage.s3_client(max_attempts=1)  # retries are ours

    def check(self) -> None:
        """Fail early (before any upload) on bad credentials or a missing bucket."""
        self._call(lambda: self.client.head_bucket(Bucket=self.bucket), "check bucket")

    def put_file(self, key: str, path: Path) -> None:
        def put():
            with open(path, "rb") as f:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=f)

        self._call(put, f"upload {key}")

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/json"
            ),
            f"upload {key}",
        )

    def get_bytes(self, key: str) -> bytes | None:
        def get():
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except self.client.exceptions.NoSuchKey:
                return None

        return self._call(get, f"read {key}")

    def get_file(self, key: str, dst: Path) -> None:
        self._call(lambda: self.client.download_file(self.bucket, key, str(dst)), f"read {key}")

    def delete(self, key: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key), f"delete {key}")

    def keys(self, prefix: str) -> list[StoredKey]:
        def page(token: str | None):
            kw = {"ContinuationToken": token} if token else {}
            return self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, **kw)

        out, token = [], None
        while True:
            r = self._call(lambda t=token: page(t), f"list {prefix}")
            out += [StoredKey(o["Key"], o["Size"], o["LastModified"].timestamp())
                    for o in r.get("Contents", [])]  # fmt: skip
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return sorted(out)

    def _call(self, fn, what: str):
        """Run fn, retrying transient failures with backoff; explain permanent ones."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        where = f"{self.endpoint}, bucket {self.bucket}"
        last = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return fn()
            except NoCredentialsError:
                raise RegistryError(
                    f"{what}: no S3 credentials ({where}); set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY or run `genpt stack up`"
                ) from None
            except (BotoConnectionError, HTTPClientError) as e:
                last = type(e).__name__
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                if code in TRANSIENT or status in TRANSIENT:
                    last = code or status
                    continue
                raise _explain(code, status, what, where) from None
            except BotoCoreError as e:
                raise RegistryError(f"{what}: {type(e).__name__} ({where})") from None
        raise RegistryError(
            f"{what}: S3 unavailable after {self.retries} attempts ({last}; {where})"
        )


def _explain(code: str, status: str, what: str, where: str) -> RegistryError:
    if code in AUTH or status == "403":
        return RegistryError(
            f"{what}: S3 refused the credentials ({code or status}; {where}): check "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (environment or .genpt/s3.env)"
        )
    if code in ("NoSuchBucket", "404") or status == "404":
        return RegistryError(f"{what}: bucket does not exist ({where}); create it first")
    return RegistryError(f"{what}: S3 error {code or status} ({where})")


def open_store(target: str, bucket: str, local_dir: str, retries: int, backoff_s: float):
    """`target` auto|s3|local -> a store; auto means S3 when an endpoint or key is set."""
    from_file = storage.load_env_file()
    if target == "s3" or (target == "auto" and storage.s3_configured()):
        store = S3Store(bucket, retries, backoff_s)
        store.why = (
            "publish.target is s3" if target == "s3"
            else f"an S3 endpoint is configured ({storage.ENV_FILE if from_file else 'env'})"
        )  # fmt: skip
        return store
    store = LocalStore(local_dir)
    store.why = (
        "publish.target is local" if target == "local"
        else "no S3 endpoint configured; `genpt stack up` starts the local S3 store"
    )  # fmt: skip
    return store


def registry_store(cfg, target: str | None = None):
    """The registry of params `publish:` (a PublishConfig); `target` overrides cfg.target."""
    return open_store(target or cfg.target, cfg.bucket, cfg.local_dir, cfg.retries, cfg.backoff_s)
