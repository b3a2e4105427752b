"""Offline by design: nothing downloads or phones home at run time."""

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply(**extra: str) -> None:
    """Set the offline/no-analytics variables (and `extra`) unless the user set them."""
    for k, v in {**OFFLINE_ENV, **extra}.items():
        os.environ.setdefault(k, v)
