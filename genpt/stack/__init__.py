"""The local S3 stack: the SeaweedFS process manager (seaweedfs.py, `genpt stack`) and the
S3 client every S3 user shares (storage.py)."""
