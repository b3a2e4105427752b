"""genpt/stack/seaweedfs.py against the real `weed`: start, refuse strangers, stop by pid,
restart."""

from __future__ import annotations

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from genpt.stack import seaweedfs as stack
from tests.conftest import seaweedfs


def _client(endpoint, **kw):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **kw)


def test_up_creates_buckets_and_client_config(weed, tmp_path):
    s3 = stack._client(weed)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(stack.DEFAULT_BUCKETS) <= names
    assert weed.endpoint.startswith("http://127.0.0.1:")
    assert stack.status(weed.dir)["pid"] == weed.pid

    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://genpt-dvc/c\n"
    )
    stack.write_client_config(weed, tmp_path)
    env = (tmp_path / ".genpt" / "s3.env").read_text()
    local = (tmp_path / ".dvc" / "config.local").read_text()
    assert f"AWS_SECRET_ACCESS_KEY={weed.secret_key}" in env
    assert weed.endpoint in local and weed.secret_key in local
    assert weed.secret_key not in (tmp_path / ".dvc" / "config").read_text()
    assert (tmp_path / ".genpt" / "s3.env").stat().st_mode & 0o077 == 0


def test_anonymous_requests_are_refused(weed):
    s3 = stack._client(weed)
    s3.put_object(Bucket="genpt-models", Key="probe", Body=b"x")
    anon = _client(weed.endpoint, config=Config(signature_version=UNSIGNED))
    for call in (
        lambda: anon.get_object(Bucket="genpt-models", Key="probe"),
        lambda: anon.put_object(Bucket="genpt-models", Key="evil", Body=b"x"),
        lambda: anon.list_objects_v2(Bucket="genpt-models"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "AccessDenied"


def test_wrong_secret_is_refused(weed):
    bad = _client(
        weed.endpoint, aws_access_key_id=weed.access_key, aws_secret_access_key="not-the-secret"
    )
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_down_stops_by_pid_and_up_restarts_on_the_same_data(tmp_path):
    state = tmp_path / "weed"
    with seaweedfs(state, buckets=["keep-me"]) as first:
        stack._client(first).put_object(Bucket="keep-me", Key="k", Body=b"persisted")
        assert stack.down(state) is True
        assert not stack._alive(first.pid)
        assert stack.status(state) == {"running": False}
        assert stack.down(state) is False  # idempotent

        again = stack.up(state, buckets=["keep-me"])
        assert again.pid != first.pid
        assert (again.access_key, again.secret_key) == (first.access_key, first.secret_key)
        body = stack._client(again).get_object(Bucket="keep-me", Key="k")["Body"].read()
        assert body == b"persisted"
