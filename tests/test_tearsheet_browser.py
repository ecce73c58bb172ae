"""The tearsheet and the daily report, opened in a real headless Chromium.

A real ledger: two strategies (always call, always put) backtested over two synthetic days
with the session code, then ``tradenova report`` writes the tearsheet of both and the daily
report of one. In the browser: no console errors, every image decoded (natural width > 0),
every table has data rows, no section is empty, and each number shown (its visible text
and its exact ``data-value``) equals ``calculate_metrics`` for that account.

Set TEARSHEET_SCREENSHOT=/path.png to keep a full-page screenshot of the tearsheet.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import date

import pytest

from tradenova_dagster import cli
from tradenova_dagster.domain import Decision, Signal
from tradenova_dagster.ledger.accounts import shared_store
from tradenova_dagster.market.data import get_source
from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.session.day import backtest_day

pytestmark = pytest.mark.slow

DAYS = ("2026-10-29", "2026-10-30")
STRATEGIES = {"calls": Decision.BUY_CALL, "puts": Decision.BUY_PUT}
# How a visible number may differ from the exact one: the rounding of its format.
TOLERANCE = {"money": 0.005, "dollars": 0.005, "pct": 0.00005, "ratio": 0.0005, "int": 0}


class Always:
    """A signal that always asks for the same side (a baseline strategy)."""

    model_id = "scripted"

    def __init__(self, decision: Decision):
        self.decision = decision

    def reset(self, day=None, context=None):
        pass

    def on_bar(self, bar, position=None):
        action = 0.9 if self.decision == Decision.BUY_CALL else -0.9
        return Signal(bar.timestamp, bar.symbol, action, action, self.decision, self.model_id)


def chromium():
    """(browser, driver) paths, or skip naming what is missing and how to install it."""
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(f"headless Chromium not found (browser: {browser}, chromedriver: {driver}); "
                    "install it with .ci/ensure_chromium.sh (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture
def browser(monkeypatch):
    browser_path, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def visible_number(text: str) -> float | None:
    """'+$1,234.50' -> 1234.5, '-0.32%' -> -0.0032, '3.138' -> 3.138, 'undefined' -> None."""
    if text == "undefined":
        return None
    match = re.fullmatch(r"([+-]?)\$?([\d,]*\.?\d+)(%?)", text.strip())
    assert match, f"not a number as the page formats numbers: {text!r}"
    value = float(match.group(2).replace(",", "")) * (-1 if match.group(1) == "-" else 1)
    return value / 100 if match.group(3) else value


def kind_of(text: str) -> str:
    if text.endswith("%"):
        return "pct"
    if "$" in text:
        return "money"
    return "int" if re.fullmatch(r"[\d,]+", text) else "ratio"


def load_and_check(driver, path, expected_images: int) -> list[dict]:
    """Open the page; assert it loaded cleanly; return its numbers (metric, text, value)."""
    driver.get(path.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], f"console errors on {path.name}: {errors}"
    images = driver.execute_script(
        "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == expected_images, images
    for alt, complete, width, height in images:
        assert complete and width > 0 and height > 0, f"image {alt!r} did not load ({width}x{height})"
    # naturalWidth comes from the PNG's header alone, and a cut-off PNG still "loads" (its
    # top part): drawn on a canvas, every pixel of a whole chart is opaque (white background).
    transparent = driver.execute_script(
        "return [...document.images].map(i => { const c = document.createElement('canvas');"
        " c.width = i.naturalWidth; c.height = i.naturalHeight; const g = c.getContext('2d');"
        " g.drawImage(i, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let k = 3; k < d.length; k += 4) { if (d[k] < 255) n++; } return [i.alt, n]; })")
    assert all(n == 0 for _alt, n in transparent), f"images not fully drawn: {transparent}"
    rows = driver.execute_script(
        "return [...document.querySelectorAll('table')].map(t => [t.className, t.rows.length])")
    assert rows and all(n >= 2 for _cls, n in rows), f"a table without data rows: {rows}"
    return driver.execute_script(
        "return [...document.querySelectorAll('[data-metric][data-value]')].map("
        "e => ({metric: e.dataset.metric, value: e.dataset.value, text: e.innerText}))")


def assert_equal_metrics(numbers: list[dict], prefix: str, metrics: dict) -> int:
    checked = 0
    for n in numbers:
        if not n["metric"].startswith(prefix):
            continue
        key = n["metric"][len(prefix):]
        expected = metrics[key]
        exact = None if n["value"] == "" else float(n["value"])
        assert exact == (None if expected is None else float(expected)), (n, expected)
        shown = visible_number(n["text"])
        if expected is None:
            assert shown is None, n
        else:
            assert shown is not None and abs(shown - expected) <= TOLERANCE[kind_of(n["text"])] + 1e-12, (n, expected)
        checked += 1
    return checked


def test_tearsheet_and_daily_report_in_headless_chromium(browser, tradenova_home, tmp_path, capsys):
    source = get_source("synthetic")
    for backtest_id, decision in STRATEGIES.items():
        for day in DAYS:  # one account across the days: the first day starts it afresh
            backtest_day(shared_store(), source, day, Always(decision), backtest_id, fresh=day == DAYS[0])
    accounts = [f"backtest:{b}" for b in STRATEGIES]

    args = ["report", "--tearsheet", *(a for account in accounts for a in ("--account", account))]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    path = tradenova_home / "reports" / "tearsheets" / f"backtest_calls+backtest_puts_{DAYS[0]}_{DAYS[-1]}.html"
    assert f"tearsheet: {path}" in out and "SPY buy and hold from the open of 2026-10-29" in out

    numbers = load_and_check(browser, path, expected_images=7)
    assert browser.find_elements("css selector", ".empty") == []  # every section has something to show
    headers = [h.text for h in browser.find_elements("css selector", "h2")]
    for section in ("Per strategy", "Return vs SPY buy and hold", "Monthly returns and rolling Sharpe",
                    "Trade P&L and exit reasons", "Per agent", "Risk refusals by rule", "Trades"):
        assert section in headers, headers
    span = (date.fromisoformat(DAYS[-1]) - date.fromisoformat(DAYS[0])).days + 1
    trades_shown = 0
    for account in accounts:
        metrics = MetricsTracker(account=account).calculate_metrics(lookback_days=span, as_of=DAYS[-1])
        assert metrics["num_trades"] > 0 and metrics["num_days"] == len(DAYS)
        assert assert_equal_metrics(numbers, f"strategy.{account}.", metrics) == 14
        trades_shown += metrics["num_trades"]
    trade_rows = browser.execute_script(
        "const t = [...document.querySelectorAll('h2')].find(h => h.innerText.startsWith('Trades'))"
        ".nextElementSibling.querySelector('table'); return [...t.tBodies[0].rows].map(r => r.cells[1].innerText)")
    assert len(trade_rows) == trades_shown
    assert all(re.fullmatch(r"2026-10-(29|30) (09|1[0-5]):\d\d:\d\d", t) for t in trade_rows), trade_rows[:5]
    refusals = browser.execute_script(
        "return [...document.querySelectorAll('table')].find(t => t.innerText.includes('most common reason'))"
        ".tBodies[0].rows.length")
    assert refusals >= 1  # the loss-streak halt refuses the rest of a day's entries
    if os.environ.get("TEARSHEET_SCREENSHOT"):
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1200, height)
        browser.save_screenshot(os.environ["TEARSHEET_SCREENSHOT"])

    assert cli.main(["report", "--account", accounts[0], "--date", DAYS[-1]]) == 0
    daily = tradenova_home / "reports" / "backtest_calls" / f"{DAYS[-1]}.html"
    numbers = load_and_check(browser, daily, expected_images=4 + 7)
    tracker = MetricsTracker(account=accounts[0])
    assert assert_equal_metrics(numbers, "window.", tracker.calculate_metrics(lookback_days=30, as_of=DAYS[-1])) == 14
    day_metrics = tracker.calculate_metrics(lookback_days=1, as_of=DAYS[-1])
    assert assert_equal_metrics([n for n in numbers if n["metric"] != "day.drawdown"], "day.", day_metrics) == 9
