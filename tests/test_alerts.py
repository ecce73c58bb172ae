"""Alerts against real servers: a local HTTP server for the webhook, aiosmtpd for email."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import smtplib
import socket
import threading
import urllib.request
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tradenova_dagster.alerts import Alert, Alerter

SMTP_PASSWORD = "hunter2-SMTP-PASSWORD"
URL_TOKEN = "T0KEN-IN-PATH-7f3a"
QUERY_SECRET = "QUERY-SECRET-91b2"
URL_PASSWORD = "URL-PASSWORD-55c1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_alert(**kw) -> Alert:
    fields = dict(kind="order_rejected", account="paper:main", title="SPY call rejected",
                  detail={"symbol": "SPY250117C00600000", "reason": "insufficient buying power"},
                  ts=datetime(2025, 1, 17, 15, 0, tzinfo=UTC))
    return Alert(**{**fields, **kw})


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The servers are local: never route them through a proxy someone configured."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def webhook():
    """A real HTTP server on a free port that records every POST and answers ``status``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.received.append({"path": self.path, "headers": dict(self.headers),
                                    "json": json.loads(body)})
            server.release.wait(10)  # a test that wants a slow server clears this
            self.send_response(server.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.received, server.status, server.release = [], 200, threading.Event()
    server.release.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


class Recorder:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"alerts" and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 235 or 535


@pytest.fixture
def smtp_server():
    """A real aiosmtpd server on a free port; AUTH allowed without TLS (it is local)."""
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(),
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    controller.recorder = recorder
    yield controller
    controller.stop()


def smtp_env(controller, **extra) -> dict[str, str]:
    return {"TRADENOVA_ALERT_SMTP_HOST": "127.0.0.1",
            "TRADENOVA_ALERT_SMTP_PORT": str(controller.port),
            "TRADENOVA_ALERT_EMAIL_FROM": "tradenova@example.com",
            "TRADENOVA_ALERT_EMAIL_TO": "ops@example.com, oncall@example.com",
            **extra}


# --- the alert itself -------------------------------------------------------------------


def test_alert_rejects_unknown_kind_naming_it():
    with pytest.raises(ValueError, match="'kill-switch'"):
        make_alert(kind="kill-switch")


def test_alert_requires_aware_ts_and_keeps_it_in_utc():
    with pytest.raises(ValueError, match="timezone-aware"):
        make_alert(ts=datetime(2025, 1, 17, 10, 0))
    eastern = timezone(timedelta(hours=-5))
    alert = make_alert(ts=datetime(2025, 1, 17, 10, 0, tzinfo=eastern))
    assert alert.ts == datetime(2025, 1, 17, 15, 0, tzinfo=UTC)
    assert alert.ts.utcoffset() == timedelta(0)


def test_alert_text_is_one_line():
    alert = make_alert(title="flatten\nfailed", detail={"why": "broker\r\ndown"})
    assert "\n" not in alert.text and "\r" not in alert.text
    assert alert.text.startswith("[TradeNova] order_rejected on paper:main: flatten failed")


# --- channels ---------------------------------------------------------------------------


def test_nothing_configured_logs_only(caplog):
    alerter = Alerter.from_env({})
    with caplog.at_level(logging.WARNING, logger="tradenova_dagster.alerts"):
        result = alerter.send(make_alert(kind="kill_switch"))
    assert result == {"webhook": "not configured", "email": "not configured"}
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "kill_switch" in record.getMessage() and "paper:main" in record.getMessage()


def test_webhook_receives_the_alert_as_json(webhook, caplog):
    alerter = Alerter.from_env({"TRADENOVA_ALERT_WEBHOOK_URL": f"{webhook.base}/hooks/{URL_TOKEN}"})
    with caplog.at_level(logging.WARNING, logger="tradenova_dagster.alerts"):
        result = alerter.send(make_alert())
    assert result == {"webhook": "sent", "email": "not configured"}
    [req] = webhook.received
    assert req["path"] == f"/hooks/{URL_TOKEN}"
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["json"]
    assert set(body) == {"kind", "account", "title", "detail", "ts", "text"}
    assert body["kind"] == "order_rejected" and body["account"] == "paper:main"
    assert body["title"] == "SPY call rejected"
    assert body["detail"] == {"symbol": "SPY250117C00600000", "reason": "insufficient buying power"}
    assert datetime.fromisoformat(body["ts"]) == datetime(2025, 1, 17, 15, 0, tzinfo=UTC)
    assert "order_rejected" in body["text"] and "paper:main" in body["text"]
    assert "insufficient buying power" in body["text"] and "\n" not in body["text"]
    assert "order_rejected" in caplog.text  # logged as well as sent
    assert URL_TOKEN not in caplog.text


def test_webhook_credentials_in_url_become_basic_auth(webhook):
    url = webhook.base.replace("http://", f"http://bot:{URL_PASSWORD}@") + "/hook"
    assert Alerter.from_env({"TRADENOVA_ALERT_WEBHOOK_URL": url}).send(make_alert())["webhook"] == "sent"
    auth = webhook.received[0]["headers"]["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"bot:{URL_PASSWORD}"


def test_webhook_500_is_a_failure_not_an_exception(webhook, caplog):
    webhook.status = 500
    url = (webhook.base.replace("http://", f"http://bot:{URL_PASSWORD}@")
           + f"/hooks/{URL_TOKEN}?token={QUERY_SECRET}")
    with caplog.at_level(logging.WARNING, logger="tradenova_dagster.alerts"):
        result = Alerter.from_env({"TRADENOVA_ALERT_WEBHOOK_URL": url}).send(make_alert())
    assert result["webhook"].startswith("failed: HTTP 500")
    assert len(webhook.received) == 1
    assert any(r.levelno == logging.ERROR and "HTTP 500" in r.getMessage() for r in caplog.records)
    for secret in (URL_PASSWORD, URL_TOKEN, QUERY_SECRET):
        assert secret not in caplog.text and secret not in repr(result)


def test_webhook_not_listening_is_a_failure(caplog):
    url = f"http://127.0.0.1:{free_port()}/hooks/{URL_TOKEN}?token={QUERY_SECRET}"
    with caplog.at_level(logging.WARNING, logger="tradenova_dagster.alerts"):
        result = Alerter.from_env({"TRADENOVA_ALERT_WEBHOOK_URL": url}).send(make_alert())
    assert result["webhook"].startswith("failed: ")
    assert "refused" in result["webhook"].lower()
    for secret in (URL_TOKEN, QUERY_SECRET):
        assert secret not in caplog.text and secret not in repr(result)


def test_webhook_slower_than_the_timeout_is_a_failure(webhook):
    webhook.release.clear()  # the server holds the request until the test ends
    alerter = Alerter(webhook_url=f"{webhook.base}/hook", timeout_s=0.3)
    result = alerter.send(make_alert())
    assert result["webhook"].startswith("failed: ") and "timed out" in result["webhook"]


def test_email_reaches_the_smtp_server(smtp_server, caplog):
    alerter = Alerter.from_env(smtp_env(smtp_server))
    with caplog.at_level(logging.WARNING, logger="tradenova_dagster.alerts"):
        result = alerter.send(make_alert(kind="flatten_failed", detail={"symbol": "SPY", "tries": 3}))
    assert result == {"webhook": "not configured", "email": "sent"}
    [(mail_from, rcpt_tos, msg)] = smtp_server.recorder.messages
    assert mail_from == "tradenova@example.com"
    assert rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert "flatten_failed" in msg["Subject"] and "paper:main" in msg["Subject"]
    body = msg.get_content()
    assert '"symbol": "SPY"' in body and '"tries": 3' in body
    assert "flatten_failed" in caplog.text


def test_email_with_login_and_both_channels(smtp_server, webhook, caplog):
    env = smtp_env(smtp_server, TRADENOVA_ALERT_SMTP_USER="alerts",
                   TRADENOVA_ALERT_SMTP_PASSWORD=SMTP_PASSWORD,
                   TRADENOVA_ALERT_WEBHOOK_URL=f"{webhook.base}/hook")
    alerter = Alerter.from_env(env)
    with caplog.at_level(logging.DEBUG, logger="tradenova_dagster.alerts"):
        result = alerter.send(make_alert(kind="crash"))
    assert result == {"webhook": "sent", "email": "sent"}
    assert len(smtp_server.recorder.messages) == 1 and len(webhook.received) == 1
    assert SMTP_PASSWORD not in caplog.text and SMTP_PASSWORD not in repr(alerter)


def test_starttls_is_required_when_asked_for(smtp_server):
    """This aiosmtpd offers no STARTTLS: the alert must fail, not go out in the clear."""
    env = smtp_env(smtp_server, TRADENOVA_ALERT_SMTP_STARTTLS="1")
    result = Alerter.from_env(env).send(make_alert())
    assert result["email"].startswith("failed: SMTPNotSupportedError")
    assert smtp_server.recorder.messages == []


def test_smtp_wrong_password_fails_without_leaking_it(smtp_server, caplog):
    wrong = "WRONG-" + SMTP_PASSWORD
    env = smtp_env(smtp_server, TRADENOVA_ALERT_SMTP_USER="alerts",
                   TRADENOVA_ALERT_SMTP_PASSWORD=wrong)
    with caplog.at_level(logging.DEBUG, logger="tradenova_dagster.alerts"):
        result = Alerter.from_env(env).send(make_alert())
    assert result["email"].startswith("failed: SMTPAuthenticationError")
    assert smtp_server.recorder.messages == []
    assert wrong not in caplog.text and wrong not in repr(result)


def test_smtp_not_listening_is_a_failure(caplog):
    env = {"TRADENOVA_ALERT_SMTP_HOST": "127.0.0.1", "TRADENOVA_ALERT_SMTP_PORT": str(free_port()),
           "TRADENOVA_ALERT_EMAIL_FROM": "a@example.com", "TRADENOVA_ALERT_EMAIL_TO": "b@example.com"}
    with caplog.at_level(logging.WARNING, logger="tradenova_dagster.alerts"):
        result = Alerter.from_env(env).send(make_alert())
    assert result["email"].startswith("failed: ")
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_a_delivery_error_that_quotes_a_secret_is_scrubbed(monkeypatch, caplog):
    """Some libraries put the URL (or what they sent) in their errors: it must not leak."""
    url = f"https://bot:{URL_PASSWORD}@hooks.example.com/hooks/{URL_TOKEN}?token={QUERY_SECRET}"

    def urlopen(request, timeout):
        raise OSError(f"cannot reach {url} (path /hooks/{URL_TOKEN}?token={QUERY_SECRET})")

    def login(self, user, password):
        raise smtplib.SMTPException(f"login {user}:{password} refused")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(smtplib.SMTP, "connect", lambda self, host, port: (220, b"hi"))
    monkeypatch.setattr(smtplib.SMTP, "login", login)
    monkeypatch.setattr(smtplib.SMTP, "close", lambda self: None)
    monkeypatch.setattr(smtplib.SMTP, "quit", lambda self: None)
    env = {"TRADENOVA_ALERT_WEBHOOK_URL": url, "TRADENOVA_ALERT_SMTP_HOST": "mail",
           "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com", "TRADENOVA_ALERT_EMAIL_TO": "b@x.com",
           "TRADENOVA_ALERT_SMTP_USER": "alerts", "TRADENOVA_ALERT_SMTP_PASSWORD": SMTP_PASSWORD}
    with caplog.at_level(logging.DEBUG, logger="tradenova_dagster.alerts"):
        result = Alerter.from_env(env).send(make_alert())
    assert result["webhook"].startswith("failed: OSError: cannot reach ")
    assert result["email"].startswith("failed: SMTPException: login alerts:")
    for secret in (URL_PASSWORD, URL_TOKEN, QUERY_SECRET, SMTP_PASSWORD):
        assert secret not in caplog.text and secret not in repr(result)


def test_send_never_raises_on_a_malformed_alert():
    result = Alerter.from_env({}).send("not an alert")  # type: ignore[arg-type]
    assert all(v.startswith("failed: ") for v in result.values())


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(("env", "missing", "present"), [
    ({"TRADENOVA_ALERT_SMTP_HOST": "mail"},
     ["TRADENOVA_ALERT_EMAIL_FROM", "TRADENOVA_ALERT_EMAIL_TO"], ["TRADENOVA_ALERT_SMTP_HOST"]),
    ({"TRADENOVA_ALERT_SMTP_HOST": "mail", "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com"},
     ["TRADENOVA_ALERT_EMAIL_TO"], ["TRADENOVA_ALERT_EMAIL_FROM"]),
    ({"TRADENOVA_ALERT_EMAIL_TO": " , "},
     ["TRADENOVA_ALERT_SMTP_HOST", "TRADENOVA_ALERT_EMAIL_FROM", "TRADENOVA_ALERT_EMAIL_TO"], []),
    ({"TRADENOVA_ALERT_SMTP_HOST": "mail", "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com",
      "TRADENOVA_ALERT_EMAIL_TO": "b@x.com", "TRADENOVA_ALERT_SMTP_USER": "u"},
     ["TRADENOVA_ALERT_SMTP_PASSWORD"], ["TRADENOVA_ALERT_SMTP_HOST"]),
])
def test_partial_smtp_config_is_refused_naming_what_is_missing(env, missing, present):
    with pytest.raises(ValueError, match="partial SMTP") as err:
        Alerter.from_env(env)
    for var in missing:
        assert var in str(err.value)
    for var in present:
        assert f"{var}," not in str(err.value) and not str(err.value).endswith(var)


def test_smtp_defaults_port_25_and_reads_starttls():
    base = {"TRADENOVA_ALERT_SMTP_HOST": "mail", "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com",
            "TRADENOVA_ALERT_EMAIL_TO": "b@x.com"}
    smtp = Alerter.from_env(base).smtp
    assert smtp.port == 25 and smtp.starttls is False
    assert Alerter.from_env({**base, "TRADENOVA_ALERT_SMTP_STARTTLS": "1"}).smtp.starttls is True


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1"])
def test_bad_smtp_port_is_refused_naming_variable_and_value(port):
    env = {"TRADENOVA_ALERT_SMTP_HOST": "mail", "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com",
           "TRADENOVA_ALERT_EMAIL_TO": "b@x.com", "TRADENOVA_ALERT_SMTP_PORT": port}
    with pytest.raises(ValueError, match=f"TRADENOVA_ALERT_SMTP_PORT='{port}'"):
        Alerter.from_env(env)


@pytest.mark.parametrize(("var", "value"), [
    ("TRADENOVA_ALERT_EMAIL_FROM", "tradenova"),
    ("TRADENOVA_ALERT_EMAIL_TO", "ops@example.com, oncall"),
    ("TRADENOVA_ALERT_SMTP_STARTTLS", "maybe"),
])
def test_bad_smtp_value_is_refused_naming_variable_and_value(var, value):
    env = {"TRADENOVA_ALERT_SMTP_HOST": "mail", "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com",
           "TRADENOVA_ALERT_EMAIL_TO": "b@x.com", var: value}
    with pytest.raises(ValueError, match=var) as err:
        Alerter.from_env(env)
    assert value.split(", ")[-1] in str(err.value)


def test_bad_config_errors_never_echo_the_password():
    env = {"TRADENOVA_ALERT_SMTP_HOST": "mail", "TRADENOVA_ALERT_EMAIL_FROM": "a@x.com",
           "TRADENOVA_ALERT_EMAIL_TO": "b@x.com", "TRADENOVA_ALERT_SMTP_USER": "u",
           "TRADENOVA_ALERT_SMTP_PASSWORD": SMTP_PASSWORD, "TRADENOVA_ALERT_SMTP_PORT": "smtp"}
    with pytest.raises(ValueError, match="TRADENOVA_ALERT_SMTP_PORT") as err:
        Alerter.from_env(env)
    assert SMTP_PASSWORD not in str(err.value)


@pytest.mark.parametrize("url", [
    f"ftp://bot:{URL_PASSWORD}@hooks.example.com/{URL_TOKEN}?token={QUERY_SECRET}",
    f"hooks.example.com/{URL_TOKEN}?token={QUERY_SECRET}",
])
def test_bad_webhook_url_is_refused_redacted(url):
    with pytest.raises(ValueError, match="TRADENOVA_ALERT_WEBHOOK_URL") as err:
        Alerter.from_env({"TRADENOVA_ALERT_WEBHOOK_URL": url})
    for secret in (URL_PASSWORD, URL_TOKEN, QUERY_SECRET):
        assert secret not in str(err.value)
    if url.startswith("ftp"):
        assert "ftp://hooks.example.com" in str(err.value)


def test_bad_timeout_is_refused():
    with pytest.raises(ValueError, match="TRADENOVA_ALERT_TIMEOUT_S='soon'"):
        Alerter.from_env({"TRADENOVA_ALERT_TIMEOUT_S": "soon"})
    assert Alerter.from_env({"TRADENOVA_ALERT_TIMEOUT_S": "1.5"}).timeout_s == 1.5
