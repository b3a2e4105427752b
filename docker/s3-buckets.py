"""compose.yaml's s3-init service: create the buckets named on the command line once the
S3 gateway answers (endpoint and keys from the environment, as every genpt S3 client)."""

import sys
import time

from botocore.exceptions import BotoCoreError, ClientError

from genpt.stack import storage

s3 = storage.s3_client(max_attempts=1, timeouts=(2, 10))
deadline = time.monotonic() + 120
while True:
    try:
        have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        break
    except (BotoCoreError, ClientError) as e:
        if time.monotonic() > deadline:
            sys.exit(f"S3 at {storage.endpoint_url()}: no answer after 120 s ({e})")
        time.sleep(1)
for bucket in sys.argv[1:]:
    if bucket not in have:
        s3.create_bucket(Bucket=bucket)
print(f"buckets at {storage.endpoint_url()}: {sorted(have | set(sys.argv[1:]))}")
