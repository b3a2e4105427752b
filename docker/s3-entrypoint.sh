#!/bin/sh
# compose.yaml's S3 service: `weed "$@"` with one S3 identity from the environment's keys.
# They go to an identities file only this user reads (-s3.config=/tmp/s3.json), and are
# removed from weed's environment: weed would log an access key it finds there.
set -eu
: "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID (the S3 service refuses to run open)}"
: "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY}"
umask 077
printf '{"identities": [{"name": "genpt", "credentials": [{"accessKey": "%s", "secretKey": "%s"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}\n' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/tmp/s3.json
exec env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY weed "$@"
