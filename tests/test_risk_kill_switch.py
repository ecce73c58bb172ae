"""The kill switch: scopes, history, cheap reads, two processes, the CLI and the Dagster job."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tradenova_dagster.risk import GLOBAL, AdvancedRiskManager, KillSwitch
from tradenova_dagster.risk.commands import register
from tradenova_dagster.risk.kill_switch import switch_folder

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_in_memory_switch():
    ks = KillSwitch()
    assert not ks.is_on() and ks.state().describe() == "kill switch for *: off (never set)"
    ks.turn_on("  broker outage  ", set_by="test")
    assert ks.is_on() and ks.state().reason == "broker outage"
    ks.turn_off()
    assert not ks.is_on()
    assert [h.on for h in ks.history()] == [False, True]


def test_reason_is_required_to_turn_on(store):
    ks = KillSwitch(store)
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match="a reason is required to turn the kill switch on"):
            ks.turn_on(bad)
    with pytest.raises(ValueError, match="on must be True or False"):
        ks.set("yes", "x")
    with pytest.raises(ValueError, match="not an account name"):
        KillSwitch(store, account="")
    assert KillSwitch(store).history() == [] and not (switch_folder() / "history.jsonl").exists()


def test_scopes_global_account_and_backtests(store):
    glob = KillSwitch(store)
    paper = KillSwitch(store, account="alpaca_paper:abc")
    other = KillSwitch(store, account="sim:default")
    backtest = KillSwitch(store, account="backtest:42")
    paper.turn_on("only this account", set_by="test")
    assert paper.is_on() and not other.is_on() and not glob.is_on()
    glob.turn_on("everything", set_by="test")
    assert other.is_on() and other.state().account == GLOBAL
    assert paper.state().reason == "everything", "the global row decides first"
    assert not backtest.is_on(), "backtests replay the past; the live switch does not apply"
    glob.turn_off()
    assert paper.is_on() and not other.is_on()


def test_history_is_kept(store):
    ks = KillSwitch(store)
    ks.turn_on("first", set_by="alice", run_id="r1")
    ks.turn_off("done", set_by="bob")
    ks.turn_on("second", set_by="carol")
    hist = ks.history()
    assert [(h.on, h.reason, h.set_by) for h in hist] == [(True, "second", "carol"), (False, "done", "bob"),
                                                          (True, "first", "alice")]
    assert hist[-1].run_id == "r1"
    assert len(ks.history(limit=1)) == 1
    assert [p.name for p in switch_folder().glob("*.json")] == ["global.json"]  # one setting per scope


def test_reads_are_cached_until_the_switch_changes(store, monkeypatch):
    """In a hot loop the reader stats a file; it parses the file only after a change."""
    from tradenova_dagster.risk import kill_switch as module

    reader = KillSwitch(store, account="sim:default")
    writer = KillSwitch(store)
    parsed = []
    original = module.KillSwitchState.from_json

    def counting(text):
        parsed.append(text)
        return original(text)

    monkeypatch.setattr(module.KillSwitchState, "from_json", staticmethod(counting))
    assert not reader.is_on() and parsed == []  # no file yet: nothing to parse
    writer.turn_on("stop", set_by="test")
    for _ in range(1000):
        assert reader.is_on()
    assert len(parsed) == 1
    writer.turn_off("go", set_by="test")
    for _ in range(1000):
        assert not reader.is_on()
    assert len(parsed) == 2
    reader.refresh()
    assert len(parsed) == 3


def test_a_hand_edited_file_is_seen_and_an_unreadable_one_counts_as_on(store):
    reader = KillSwitch(store, account="sim:default")
    KillSwitch(store).turn_off("normal", set_by="test")
    assert not reader.is_on()
    path = switch_folder() / "global.json"
    path.write_text(path.read_text().replace('"on": false', '"on": true').replace("normal", "typed by hand!"))
    assert reader.is_on() and reader.state().reason == "typed by hand!"
    path.write_text("{not json")
    state = reader.state()
    assert state.on and "unreadable kill switch file global.json" in state.reason  # fail closed


def test_a_switch_kept_in_the_database_by_an_older_version_is_carried_over(store):
    store.execute("INSERT INTO kill_switch VALUES ('*', true, 'set before the upgrade', 'ops', now(), NULL)")
    state = KillSwitch(store, account="sim:default").state()
    assert state.on and state.reason == "set before the upgrade"
    KillSwitch(store).turn_off("cleared after the upgrade", set_by="test")
    assert not KillSwitch(store, account="sim:default").is_on()  # carried over once, not again


def _child(home: Path, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADENOVA_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_switch_set_in_one_process_is_seen_by_another(store, tradenova_home):
    """Both directions: a reader created before the change sees it. The switch is set
    while this process holds both the shared database and a ledger file open, as a
    running session does: setting it never waits on storage."""
    from tradenova_dagster.ledger.accounts import ledger_store

    reader = KillSwitch(store, account="sim:default")
    manager = AdvancedRiskManager(store=store, account="sim:default", max_age_s=None)
    assert not reader.is_on() and manager.check_trade_allowed("SPY", 1, 100.0, "buy")[0]

    with store.hold(), ledger_store("sim:default").hold():  # both files locked by "the session"
        done = _child(tradenova_home, """
            from tradenova_dagster.cli import main
            raise SystemExit(main(["kill-switch", "on", "--reason", "set in another process"]))
        """, timeout=20)
    assert done.returncode == 0, done.stderr
    assert "ON since" in done.stdout
    assert reader.is_on() and reader.state().reason == "set in another process"
    allowed, reason, _ = manager.check_trade_allowed("SPY", 1, 100.0, "buy")
    assert not allowed and "set in another process" in reason

    KillSwitch(store).turn_off("back to normal", set_by="test")
    seen = _child(tradenova_home, """
        from tradenova_dagster.store import Store
        from tradenova_dagster.risk import KillSwitch
        ks = KillSwitch(Store(), account="sim:default")
        print("on" if ks.is_on() else "off", ks.state().reason)
    """)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == "off back to normal"


def test_halt_in_one_process_is_seen_by_a_running_manager(store, tradenova_home):
    session = AdvancedRiskManager(store=store, account="sim:default", max_age_s=None)
    assert session.check_trade_allowed("SPY", 1, 100.0, "buy")[0]
    done = _child(tradenova_home, """
        from tradenova_dagster.store import Store
        from tradenova_dagster.risk import AdvancedRiskManager
        AdvancedRiskManager(store=Store(), account="sim:default").update_equity(equity=97000.0)
    """)
    assert done.returncode == 0, done.stderr
    allowed, reason, _ = session.check_trade_allowed("SPY", 1, 100.0, "buy")
    assert not allowed and reason.startswith("halted: daily loss 3,000.00 = 3.00%")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradenova")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_on_off_status(store, capsys):
    assert _cli(["kill-switch", "on", "--reason", "manual stop"]) == 0
    assert "kill switch for *: ON since" in capsys.readouterr().out
    assert KillSwitch(store).is_on()
    assert _cli(["kill-switch", "status"]) == 0
    out = capsys.readouterr().out
    assert "ON since" in out and "manual stop" in out
    assert _cli(["kill-switch", "off", "--account", "*"]) == 0
    assert not KillSwitch(store).is_on()
    assert _cli(["kill-switch", "on", "--reason", "one account", "--account", "sim:x"]) == 0
    assert KillSwitch(store, account="sim:x").is_on() and not KillSwitch(store).is_on()
    with pytest.raises(SystemExit):
        _cli(["kill-switch", "on"])  # --reason is required
    capsys.readouterr()


def test_dagster_job_sets_the_switch(store):
    from ops.kill_switch import kill_switch_job
    from resources.risk import RiskResource

    resources = {"risk": RiskResource(db_path=str(store.path))}
    result = kill_switch_job.execute_in_process(
        run_config={"ops": {"set_kill_switch": {"config": {"on": True, "reason": "from the UI"}}}},
        resources=resources,
    )
    assert result.success
    state = KillSwitch(store).state()
    assert state.on and state.reason == "from the UI" and state.run_id == result.run_id
    assert state.set_by == f"dagster run {result.run_id}"
    failed = kill_switch_job.execute_in_process(
        run_config={"ops": {"set_kill_switch": {"config": {"on": True, "reason": ""}}}},
        resources=resources, raise_on_error=False,
    )
    assert not failed.success
    result = kill_switch_job.execute_in_process(
        run_config={"ops": {"set_kill_switch": {"config": {"on": False}}}}, resources=resources,
    )
    assert result.success and not KillSwitch(store).is_on()
    assert len(KillSwitch(store).history()) == 2


def test_risk_clear_lifts_a_drawdown_stop_with_an_audit_row_and_refuses_while_a_session_holds_it(
        tradenova_home, capsys):
    from datetime import date

    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.ledger.lease import AccountBusy, AccountLease

    ledger = ledger_store("sim:x")
    manager = AdvancedRiskManager(store=ledger, account="sim:x")
    manager.start_day(date(2025, 3, 3), 100_000)
    manager.start_day(date(2025, 3, 4), 89_000)  # 11% below the peak: the drawdown stop
    assert manager.is_halted and manager.state.halt_rule == "max_drawdown"
    assert _cli(["risk", "status", "--account", "sim:x"]) == 0
    assert "HALTED (max_drawdown, stop)" in capsys.readouterr().out
    with AccountLease("sim:x", "run-42", "session"):
        with pytest.raises(AccountBusy, match="run-42"):
            _cli(["risk", "clear", "--account", "sim:x", "--reason", "reviewed"])
    assert _cli(["risk", "clear", "--account", "sim:x", "--reason", "reviewed the loss"]) == 0
    assert "cleared" in capsys.readouterr().out
    assert not AdvancedRiskManager(store=ledger, account="sim:x").is_halted
    audit = ledger.query("SELECT rule, reason FROM risk_events WHERE kind = 'clear'")
    assert audit == [("max_drawdown", "reviewed the loss (cleared from the command line)")]
    with pytest.raises(ValueError, match="no ledger"):
        _cli(["risk", "status", "--account", "sim:never"])
