"""Alerts: tell a person when the unattended system hits something they must know about.

Kill switch, halt, a failed flatten, a crash or restart, a stale feed, a rejected order:
each is an ``Alert``, sent to a webhook (JSON POST; Slack-style incoming webhooks show its
``text``) and/or by email (SMTP), as the ``TRADENOVA_ALERT_*`` variables configure. With
nothing configured the alert is only logged.

- ``Alerter.send`` never raises: a dead webhook or mail server must not take a trading
  session down with it; a failed channel is logged and reported in the returned dict.
- Secrets never leave: the SMTP password and whatever a webhook URL carries (user info,
  Slack's path token, query string) appear in no log, error or result. A URL is only ever
  shown as ``scheme://host[:port]/...``.

Synchronous, standard library only (urllib, smtplib): alerts are rare, and a short timeout
(5 s by default) bounds what one can cost a bar.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

log = logging.getLogger(__name__)

KINDS = frozenset(
    {"kill_switch", "halt", "flatten_failed", "exit_failed", "crash", "restart", "stale_feed", "data_unavailable",
     "order_rejected", "no_model"}
)
DEFAULT_TIMEOUT_S = 5.0

ENV_WEBHOOK_URL = "TRADENOVA_ALERT_WEBHOOK_URL"
ENV_SMTP_HOST = "TRADENOVA_ALERT_SMTP_HOST"
ENV_SMTP_PORT = "TRADENOVA_ALERT_SMTP_PORT"
ENV_EMAIL_FROM = "TRADENOVA_ALERT_EMAIL_FROM"
ENV_EMAIL_TO = "TRADENOVA_ALERT_EMAIL_TO"
ENV_SMTP_USER = "TRADENOVA_ALERT_SMTP_USER"
ENV_SMTP_PASSWORD = "TRADENOVA_ALERT_SMTP_PASSWORD"
ENV_SMTP_STARTTLS = "TRADENOVA_ALERT_SMTP_STARTTLS"
ENV_TIMEOUT_S = "TRADENOVA_ALERT_TIMEOUT_S"

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Alert:
    """One event worth a person's attention. ``detail`` is free-form, JSON-serialisable."""

    kind: str
    account: str
    title: str
    detail: dict[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Alert.kind={self.kind!r} is not one of {sorted(KINDS)}")
        if not isinstance(self.detail, Mapping):
            raise ValueError(f"Alert.detail must be a dict, got {type(self.detail).__name__}")
        if not isinstance(self.ts, datetime) or self.ts.tzinfo is None:
            raise ValueError(f"Alert.ts={self.ts!r} must be a timezone-aware datetime")
        # Copy detail so a caller mutating its dict later cannot change a sent alert.
        object.__setattr__(self, "detail", dict(self.detail))
        object.__setattr__(self, "ts", self.ts.astimezone(UTC))

    @property
    def text(self) -> str:
        """One line a person can read at a glance (chat message, log line)."""
        extra = ", ".join(f"{k}={v}" for k, v in self.detail.items())
        line = f"[TradeNova] {self.kind} on {self.account}: {self.title}"
        line = " ".join((line + (f" ({extra})" if extra else "")).split())  # one line, always
        return line if len(line) <= 400 else line[:397] + "..."

    def payload(self) -> dict[str, Any]:
        """The webhook body: the fields, ts in ISO 8601, and ``text``."""
        return {"kind": self.kind, "account": self.account, "title": self.title,
                "detail": self.detail, "ts": self.ts.isoformat(), "text": self.text}


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send alert email. The password is kept out of ``repr``."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` only: user info, path (Slack puts its token there) and query
    may all be secret, so none of them is ever shown."""
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.scheme}://{_host_port(parts)}/..."
    except ValueError:
        return "<unparseable URL>"


def _host_port(parts: urllib.parse.SplitResult) -> str:
    """``host[:port]`` without user info (IPv6 hosts keep their brackets)."""
    host = parts.hostname or "?"
    return (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")


def _check_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{ENV_WEBHOOK_URL}={redact_url(url)!r} (shown redacted) is not an "
                         "http(s) URL with a host")
    return url


class Alerter:
    """Sends an Alert to every configured channel; see the module docstring."""

    def __init__(self, webhook_url: str | None = None, smtp: SmtpConfig | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be > 0")
        self.webhook_url = _check_url(webhook_url) if webhook_url else None
        self.smtp = smtp
        self.timeout_s = float(timeout_s)

    def __repr__(self) -> str:
        hook = redact_url(self.webhook_url) if self.webhook_url else None
        return f"Alerter(webhook={hook!r}, smtp={self.smtp!r}, timeout_s={self.timeout_s})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Alerter:
        """Build from ``TRADENOVA_ALERT_*``; a partial or malformed setting is refused with a
        ValueError naming the variable, so a typo cannot silently turn alerts off."""
        env = {k: v.strip() for k, v in environ.items() if k.startswith("TRADENOVA_ALERT_")}
        timeout_raw = env.get(ENV_TIMEOUT_S) or str(DEFAULT_TIMEOUT_S)
        if not re.fullmatch(r"\d*\.?\d+", timeout_raw) or not float(timeout_raw) > 0:
            raise ValueError(f"{ENV_TIMEOUT_S}={timeout_raw!r} must be a number of seconds > 0")
        return cls(webhook_url=env.get(ENV_WEBHOOK_URL) or None, smtp=_smtp_from_env(env),
                   timeout_s=float(timeout_raw))

    def send(self, alert: Alert) -> dict[str, str]:
        """Log the alert, then try each channel. Returns ``{"webhook": ..., "email": ...}``
        with "sent", "failed: <reason>" or "not configured". Never raises."""
        result = {"webhook": "not configured", "email": "not configured"}
        try:
            log.warning("ALERT %s", alert.text)
        except Exception:  # noqa: BLE001 - not an Alert: still never raise
            log.warning("ALERT (malformed) %r", alert)
            return {k: "failed: not an Alert" for k in result}
        for channel, configured, deliver in (("webhook", self.webhook_url, self._post),
                                             ("email", self.smtp, self._mail)):
            if not configured:
                continue
            try:
                deliver(alert)
                result[channel] = "sent"
            except Exception as exc:  # noqa: BLE001 - a dead channel must not crash a session
                result[channel] = f"failed: {self._reason(exc)}"
                log.error("alert %s to %s %s", alert.kind, channel, result[channel])
        return result

    def _post(self, alert: Alert) -> None:
        assert self.webhook_url is not None
        parts = urllib.parse.urlsplit(self.webhook_url)
        headers = {"Content-Type": "application/json", "User-Agent": "tradenova-alerts"}
        if parts.username is not None:  # urllib does not use user info itself: Basic auth
            cred = ":".join(urllib.parse.unquote(x or "") for x in (parts.username, parts.password))
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
            parts = parts._replace(netloc=_host_port(parts))
        body = json.dumps(alert.payload(), default=str).encode()
        request = urllib.request.Request(urllib.parse.urlunsplit(parts), data=body,
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                if not 200 <= response.status < 300:
                    raise RuntimeError(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            exc.close()  # release the socket; the status is all the caller needs
            raise

    def _mail(self, alert: Alert) -> None:
        cfg = self.smtp
        assert cfg is not None
        msg = EmailMessage()
        title = " ".join(alert.title.split())
        msg["Subject"] = f"[TradeNova] {alert.kind} {alert.account}: {title}"
        msg["From"], msg["To"] = cfg.sender, ", ".join(cfg.recipients)
        msg.set_content(f"{alert.text}\n\nkind: {alert.kind}\naccount: {alert.account}\n"
                        f"time (UTC): {alert.ts.isoformat()}\n\ndetail:\n"
                        f"{json.dumps(alert.detail, indent=2, sort_keys=True, default=str)}\n")
        with smtplib.SMTP(cfg.host, cfg.port, timeout=self.timeout_s) as smtp:
            if cfg.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.user:
                smtp.login(cfg.user, cfg.password or "")
            smtp.send_message(msg)

    def _reason(self, exc: BaseException) -> str:
        """A short, secret-free description of a delivery failure."""
        text = (f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else
                f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        secrets = [self.smtp.password if self.smtp else None]
        if self.webhook_url:
            p = urllib.parse.urlsplit(self.webhook_url)
            secrets += [self.webhook_url, p.query, p.password, p.username,
                        p.path if len(p.path) > 1 else None]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        return " ".join(text.split())[:300]


def _smtp_from_env(env: Mapping[str, str]) -> SmtpConfig | None:
    """SMTP needs host, from and to together; any one of the SMTP variables alone is an error."""
    smtp_vars = (ENV_SMTP_HOST, ENV_SMTP_PORT, ENV_EMAIL_FROM, ENV_EMAIL_TO, ENV_SMTP_USER,
                 ENV_SMTP_PASSWORD, ENV_SMTP_STARTTLS)
    if not any(env.get(v) for v in smtp_vars):
        return None
    recipients = tuple(a.strip() for a in env.get(ENV_EMAIL_TO, "").split(",") if a.strip())
    missing = [v for v in (ENV_SMTP_HOST, ENV_EMAIL_FROM) if not env.get(v)]
    missing += [] if recipients else [ENV_EMAIL_TO]
    user, password = env.get(ENV_SMTP_USER) or None, env.get(ENV_SMTP_PASSWORD) or None
    if user and not password:
        missing.append(ENV_SMTP_PASSWORD)
    if password and not user:
        missing.append(ENV_SMTP_USER)
    if missing:
        raise ValueError(f"partial SMTP alert configuration: missing {', '.join(missing)}")
    for addr in (env[ENV_EMAIL_FROM], *recipients):
        if "@" not in addr:
            var = ENV_EMAIL_FROM if addr == env[ENV_EMAIL_FROM] else ENV_EMAIL_TO
            raise ValueError(f"{var}={addr!r} is not an email address")
    port_raw = env.get(ENV_SMTP_PORT) or "25"
    if not (port_raw.isascii() and port_raw.isdigit() and 0 < int(port_raw) < 65536):
        raise ValueError(f"{ENV_SMTP_PORT}={port_raw!r} is not a port number (1-65535)")
    starttls_raw = env.get(ENV_SMTP_STARTTLS, "").lower()
    if starttls_raw not in _TRUE | _FALSE:
        raise ValueError(f"{ENV_SMTP_STARTTLS}={starttls_raw!r} must be 1 or 0")
    return SmtpConfig(host=env[ENV_SMTP_HOST], port=int(port_raw), sender=env[ENV_EMAIL_FROM],
                      recipients=recipients, user=user, password=password,
                      starttls=starttls_raw in _TRUE)
