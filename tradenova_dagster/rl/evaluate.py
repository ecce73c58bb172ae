"""Out-of-sample evaluation of a model against the baselines, after costs: the gate's.

The held-out days are replayed through the real session loop on SimBroker
(``session.day.backtest_day``: risk rules, take-profit ladder, option pricing and costs
all on) for the model and for every baseline of ``strategies.BASELINES`` (flat,
always-call, always-put, uniform random, momentum, opening-range breakout), each on a
backtest account of its own (``eval-<label>-<strategy>``, one account across the days).
Per agent: daily after-cost P&L (end minus start equity), its mean, IQM and 95% bootstrap
CI, win rate (winning trades / trades), max drawdown (intraday, a fraction of peak
equity) and trades per day; the verdict is ``rl.gate.gate`` on the daily P&L. This is the
P&L the account would book, so it is what promotion is decided on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Sequence

import numpy as np


def cumulative_pnl_png(days: Sequence[date], daily_pnl: dict[str, Sequence[float]], highlight: str) -> bytes:
    """Cumulative P&L per agent over ``days`` as PNG bytes (``highlight`` drawn thicker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    x = [d.isoformat() for d in days]
    for name, pnl in daily_pnl.items():
        ax.plot(x, np.cumsum(pnl), label=name, lw=2 if name == highlight else 1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("cumulative P&L ($)")
    ax.set_title("Out-of-sample P&L after costs")
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


# --------------------------------------------------------------------------- replays (the gate's)


@dataclass
class AgentRun:
    """One agent replayed over the evaluation days on its own backtest account."""

    name: str
    model_id: str
    account: str
    daily_pnl: list[float]
    trades: list[int]
    wins: list[int]  # winning trades per day
    max_drawdown: float

    def row(self) -> dict:
        from tradenova_dagster.research.summary import win_rate
        from tradenova_dagster.rl.gate import iqm, mean_ci

        low, high = mean_ci(self.daily_pnl)
        return {"agent": self.name, "model_id": self.model_id, "days": len(self.daily_pnl),
                "mean_daily_pnl": float(np.mean(self.daily_pnl)), "iqm_daily_pnl": float(iqm(self.daily_pnl)),
                "ci_low": low, "ci_high": high, "win_rate": win_rate(sum(self.wins), sum(self.trades)),
                "max_drawdown": self.max_drawdown, "trades_per_day": float(np.mean(self.trades))}


def backtest_id(label: str, agent: str) -> str:
    """``eval-<label>-<agent>`` with anything a backtest id refuses turned into '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"eval-{label}-{agent}")


def replay_agent(store, source, days: Sequence[date], signal, name: str, label: str, *,
                 initial_cash: float = 100_000.0) -> AgentRun:
    """Replay ``days`` in order through the session loop with ``signal``, as one account
    (the first day starts it afresh: ``research.sweep.replay_run``), and read its daily
    P&L, trades and drawdown."""
    from tradenova_dagster.research.sweep import replay_run
    from tradenova_dagster.session.day import backtest_account

    bid = backtest_id(label, name)
    frame = replay_run(store, source, signal, bid, days, initial_cash=initial_cash)
    return AgentRun(name, getattr(signal, "model_id", "") or name, backtest_account(bid),
                    [float(v) for v in frame["pnl"]], [int(v) for v in frame["trades"]], [int(v) for v in frame["wins"]],
                    float(frame["max_drawdown"].iloc[0]) if len(frame) else 0.0)


def replay_baselines(store, source, days: Sequence[date], label: str, *, seed: int = 0, **kwargs) -> dict[str, AgentRun]:
    """Every baseline of ``strategies.BASELINES`` replayed over ``days`` (``random`` seeded)."""
    from tradenova_dagster.strategies import BASELINES, build_strategy

    return {name: replay_agent(store, source, days, build_strategy(name, seed=seed), name, label, **kwargs)
            for name in BASELINES}


@dataclass
class ReplayEvaluation:
    """A model and the baselines over the same replayed days, and the gate's verdict."""

    model: AgentRun
    baselines: dict[str, AgentRun]
    eval_days: list[date]

    def __post_init__(self) -> None:
        from tradenova_dagster.rl.gate import gate

        self.verdict = gate(self.model.daily_pnl, {n: r.daily_pnl for n, r in self.baselines.items()})

    @property
    def promotable(self) -> bool:
        return self.verdict.promotable

    @property
    def reason(self) -> str:
        return self.verdict.reason

    def rows(self) -> list[dict]:
        return [self.model.row(), *(run.row() for run in self.baselines.values())]

    def as_dict(self) -> dict:
        return {"promotable": self.promotable, "reason": self.reason, "verdict": self.verdict.as_dict(),
                "eval_days": [d.isoformat() for d in self.eval_days], "agents": self.rows(),
                "daily_pnl": {r.name: r.daily_pnl for r in (self.model, *self.baselines.values())}}

    def chart_png(self) -> bytes:
        series = {r.name: r.daily_pnl for r in (self.model, *self.baselines.values())}
        return cumulative_pnl_png(self.eval_days, series, self.model.name)


def evaluate_replay(store, source, days: Sequence, signal, *, name: str = "model", label: str | None = None,
                    train_days: Iterable[date] = (), baselines: dict[str, AgentRun] | None = None,
                    seed: int = 0, **kwargs) -> ReplayEvaluation:
    """Replay out-of-sample ``days`` for ``signal`` (account ``eval-<label>-<name>``, label
    the model id by default) and — unless already replayed over the same days and given
    as ``baselines`` — every baseline, then gate the model against them."""
    from tradenova_dagster.market import calendar

    days = [calendar.require_trading_day(d, "eval_days") for d in days]
    if not days:
        raise ValueError("eval_days: an evaluation needs at least one day, got none")
    overlap = sorted(set(days) & set(train_days))
    if overlap:
        raise ValueError(f"eval_days: {len(overlap)} evaluation days were trained on (first {overlap[0]}); "
                         "evaluate out of sample only")
    label = label or getattr(signal, "model_id", "") or name
    model = replay_agent(store, source, days, signal, name, label, **kwargs)
    if baselines is None:
        baselines = replay_baselines(store, source, days, label, seed=seed, **kwargs)
    return ReplayEvaluation(model, baselines, days)
