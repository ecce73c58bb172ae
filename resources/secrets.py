"""The environment: Alpaca's keys, and the settings that default from environment variables.

Precedence, field by field, for the ``broker`` and ``market_data`` resources:

    run config (``resources.<name>.config``)  >  environment variable  >  built-in default

A field the run config leaves out (or sets to null) takes its environment variable, read
when the resource is built in the run's own process, and the built-in default when that
variable is unset or empty. Dagster replaces a resource's configured values as a whole when
the run config names that resource, so nothing environment-backed is baked into
``Definitions``: the resources fill their unset fields themselves (see ``fill_from_env``).

Keys are never config values. They are read with ``dg.EnvVar(...).get_value()`` at the
moment a client is built (``alpaca_credentials``): not kept on the resource (unless its
``api_key``/``secret_key`` are wired to a ``dg.EnvVar``; those fields stay out of its
repr), never logged, never part of run config. ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY`` are TradeNova's
names; Alpaca's own ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` are accepted instead. The
two are pairs, never mixed: when either ``ALPACA_`` variable is set that pair is used,
otherwise the ``APCA_`` pair.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import dagster as dg

KEY_PAIRS = (("ALPACA_API_KEY", "ALPACA_SECRET_KEY"), ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"))
BASE_URL_ENV = "APCA_API_BASE_URL"  # Alpaca's convention: the Trading API endpoint
DATA_URL_ENV = "APCA_API_DATA_URL"  # Alpaca's convention: the Market Data API endpoint


class MissingCredentials(ValueError):
    """A mode or source that needs Alpaca keys was started without them."""


def env_value(name: str) -> Optional[str]:
    """The variable's value, or None when it is unset or empty."""
    return dg.EnvVar(name).get_value() or None


def fill_from_env(data: Any, fields: Mapping[str, tuple[Optional[str], Any]]) -> Any:
    """For a ``model_validator(mode="before")``: give every field in ``fields`` that the
    caller left out or set to None its environment variable's value, else its default.

    ``fields`` maps a field name to ``(environment variable or None, default)``.
    """
    if not isinstance(data, dict):
        return data
    filled = dict(data)
    for field, (variable, default) in fields.items():
        if filled.get(field) is None:
            value = env_value(variable) if variable else None
            filled[field] = value if value is not None else default
    return filled


def normalise_url(url: Optional[str]) -> Optional[str]:
    """An endpoint as alpaca-py wants it: no trailing slash, no ``/v2`` (the client adds it)."""
    if url is None or isinstance(url, dg.EnvVar):  # an EnvVar reference resolves at run time
        return url
    url = url.strip().rstrip("/")
    if url.endswith("/v2"):
        url = url[: -len("/v2")]
    return url or None


def alpaca_credentials(what: str, api_key: Optional[str] = None, secret_key: Optional[str] = None,
                       offline_hint: str = "") -> tuple[str, str]:
    """``(api_key, secret_key)``: the values given (a resource field wired to ``dg.EnvVar``),
    else the environment (see the module docstring for which pair).

    Raises MissingCredentials naming exactly the variables that are missing; ``what`` says
    who needs them (``"broker.mode 'alpaca_paper'"``), ``offline_hint`` how to run without.
    """
    chosen = KEY_PAIRS[0]
    for pair in KEY_PAIRS:
        if any(env_value(name) for name in pair):
            chosen = pair
            break
    key_var, secret_var = chosen
    key = api_key or env_value(key_var)
    secret = secret_key or env_value(secret_var)
    missing = [name for name, value in ((key_var, key), (secret_var, secret)) if not value]
    if missing:
        if len(missing) == 2:
            alternative = KEY_PAIRS[1] if chosen == KEY_PAIRS[0] else KEY_PAIRS[0]
            needed = (f"the {missing[0]} and {missing[1]} environment variables "
                      f"(or {alternative[0]} and {alternative[1]}); neither is set")
        else:
            needed = f"the {missing[0]} environment variable, which is not set"
        hint = f" ({offline_hint})" if offline_hint else ""
        raise MissingCredentials(f"{what} needs {needed}{hint}")
    return key, secret
