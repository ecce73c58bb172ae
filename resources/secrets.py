"""Secrets reach resources only as ``dg.EnvVar`` references, never as config values."""

import os
from typing import Optional

import dagster as dg


def optional_env_var(name: str) -> Optional[dg.EnvVar]:
    """``dg.EnvVar(name)`` when the variable is set, else None.

    Dagster fails a run that references an unset EnvVar even when the resource would not
    use it; offline modes (synthetic data, the simulated broker) need no keys, so an
    unset key must mean "no key", and the resource that needs one says so clearly.
    """
    return dg.EnvVar(name) if os.environ.get(name) else None
