"""Crash property: a session killed at a random storage commit, then restarted, ends the day
exactly as an uninterrupted one — same trades, P&L, fills and equity, no duplicate row.

Each trial runs the real ``trading_session_job`` in a ``dagster job execute`` subprocess
on a copy of one prepared home, with ``TRADENOVA_FAULT_EXIT_AT_COMMIT=N``: the process
dies with ``os._exit`` just before its N-th commit (as on a power cut), then the same
command runs again without the fault. The model is a real PPO policy with random weights,
so its actions depend on the bars and the position it sees: a restart that rebuilt the
signal's features or EMA wrongly would decide differently and fail the comparison.
"""

import os
import random
import shutil
import subprocess
import sys
from datetime import date

import pytest
import torch as th
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from conftest import REPO_ROOT
from tradenova_dagster.rl import TradingEnv, registry
from tradenova_dagster.rl.discrete import DiscreteActions
from tradenova_dagster.store import Store

DAY = "2026-11-20"
ACCOUNT = "sim:default"


def _varied_model(store):
    """A PPO policy whose action swings with its inputs (seeded), promoted."""
    venv = VecNormalize(DummyVecEnv([lambda: DiscreteActions(TradingEnv())]), norm_obs=False, norm_reward=False)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu")
    gen = th.Generator().manual_seed(7)
    with th.no_grad():
        for param in model.policy.mlp_extractor.policy_net.parameters():
            param.copy_(th.randn(param.shape, generator=gen))
        model.policy.action_net.weight.copy_(th.randn(model.policy.action_net.weight.shape, generator=gen) * 0.5)
        model.policy.action_net.bias.zero_()
    record = registry.save_model(model, venv, agent="ppo", symbol="SPY", timesteps=0, seed=0,
                                 train_days=[date(2026, 1, 5)], meta={"crafted": "random"}, store=store)
    registry.promote(record.model_id, reason="test: crash property", force=True, store=store)


def _session(home, fault_at: int | None) -> tuple[int, str]:
    config = {"ops": {"trading_session": {"config": {"date": DAY, "mode": "replay", "pace_s": 0.0005}}}}
    (home / "run.yaml").write_text(yaml.safe_dump(config))
    (home / "dagster").mkdir(exist_ok=True)
    env = {**os.environ, "TRADENOVA_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env.pop("TRADENOVA_FAULT_EXIT_AT_COMMIT", None)
    if fault_at is not None:
        env["TRADENOVA_FAULT_EXIT_AT_COMMIT"] = str(fault_at)
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "tradenova_dagster.definitions",
         "-j", "trading_session_job", "-c", str(home / "run.yaml")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "Error" in line or "error" in line]
    return done.returncode, "\n".join(errors[-8:])


def _ledger(home) -> Store:
    return Store(home / "ledgers" / "sim+default.duckdb")


def _outcome(home) -> dict:
    q = _ledger(home).query
    return {
        "trades": q("SELECT contract, qty, entry_time, exit_time, entry_price, exit_price, round(pnl, 6), exit_reason"
                    " FROM trades WHERE account = ? ORDER BY exit_time, contract, qty", [ACCOUNT]),
        "fills": q("SELECT ts, symbol, side, qty, price, commission, reason FROM fills WHERE account = ?"
                   " ORDER BY ts, symbol, side", [ACCOUNT]),
        "equity": q("SELECT ts, round(equity, 6), round(cash, 6) FROM equity_curve WHERE account = ? ORDER BY ts",
                    [ACCOUNT]),
        "orders": q("SELECT client_order_id, intent, reason, status, filled_qty FROM orders WHERE account = ?"
                    " ORDER BY client_order_id", [ACCOUNT]),
        "predictions": q("SELECT ts, round(raw_action, 9), round(smoothed_action, 9), decision FROM rl_predictions"
                         " WHERE account = ? ORDER BY ts", [ACCOUNT]),
        "decisions": q("SELECT ts, signal, allowed, reason FROM agent_decisions WHERE account = ? ORDER BY ts",
                       [ACCOUNT]),
        "sim_orders": q("SELECT client_order_id, status, filled_qty FROM sim_orders WHERE account = ?"
                        " ORDER BY client_order_id", [ACCOUNT]),
    }


def _duplicates(home) -> dict:
    q = _ledger(home).query
    return {
        "equity_curve": q("SELECT count(*) - count(DISTINCT ts) FROM equity_curve")[0][0],
        "rl_predictions": q("SELECT count(*) - count(DISTINCT ts) FROM rl_predictions")[0][0],
        "agent_decisions": q("SELECT count(*) - count(DISTINCT ts) FROM agent_decisions")[0][0],
        "fills": q("SELECT count(*) - count(DISTINCT (order_id, ts, qty)) FROM fills")[0][0],
        "trades": q("SELECT count(*) - count(DISTINCT (contract, exit_time, qty, exit_reason)) FROM trades")[0][0],
        "sim_orders": q("SELECT count(*) - count(DISTINCT client_order_id) FROM sim_orders")[0][0],
        "session_bars": q("SELECT count(*) - count(DISTINCT bar_ts) FROM session_bars")[0][0],
    }


@pytest.mark.slow
def test_a_session_killed_at_any_commit_restarts_into_the_same_day(tmp_path):
    prepared = tmp_path / "prepared"
    store = Store(prepared / "tradenova.duckdb")
    _varied_model(store)

    clean = tmp_path / "clean"
    shutil.copytree(prepared, clean)
    assert _session(clean, None)[0] == 0
    expected = _outcome(clean)
    assert len(expected["trades"]) >= 3, "the model should trade a few times for the property to mean something"
    assert len(expected["equity"]) >= 380
    assert _duplicates(clean) == dict.fromkeys(_duplicates(clean), 0)

    commits = len(expected["equity"]) + 3  # a commit per bar, plus the start and the session events
    rng = random.Random(12)
    points = sorted({2, commits - 1, *rng.sample(range(3, commits - 1), 4)})
    for n in points:
        home = tmp_path / f"crash_{n}"
        shutil.copytree(prepared, home)
        assert _session(home, n)[0] == 1, f"the run with a fault at commit {n} should have failed"
        rc, errors = _session(home, None)
        assert rc == 0, f"the restart after a crash at commit {n} failed: {errors}"
        got = _outcome(home)
        for key in expected:
            assert got[key] == expected[key], f"crash at commit {n}: {key} differ from the uninterrupted day"
        assert _duplicates(home) == dict.fromkeys(_duplicates(home), 0), f"crash at commit {n}: duplicate rows"
