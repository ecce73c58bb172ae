"""Out-of-sample evaluation of a model against baselines, after costs — two ways.

**The gate's evaluation: replays through the session loop** (``evaluate_replay``). The
held-out days are replayed through the real session loop on SimBroker
(``session.day.backtest_day``: risk rules, take-profit ladder, option pricing and costs
all on) for the model and for every baseline of ``strategies.BASELINES`` (flat,
always-call, always-put, uniform random, momentum, opening-range breakout), each on a
backtest account of its own (``eval-<label>-<strategy>``, one account across the days).
Per agent: daily after-cost P&L (end minus start equity), its mean, IQM and 95% bootstrap
CI, win rate (share of days with a positive P&L), max drawdown (intraday, a fraction of
peak equity) and trades per day; the verdict is ``rl.gate.gate`` on the daily P&L. This is
the P&L the account would book, so it is what promotion is decided on.

**A quick diagnostic in the training environment** (``evaluate_signal``): the same
SignalModel through :class:`TradingEnv` against flat, always-call, a random policy with the
model's switching rate and a momentum rule. Fast, but the env is not the session loop
(no risk rules, no ladder), so its verdict — total return above flat and the random
mean — is a training-time check, never the promotion gate.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
import pandas as pd

from tradenova_dagster.rl.env import EnvConfig, TradingEnv
from tradenova_dagster.rl.features import DayData, minute_sigma

MOMENTUM_LOOKBACK = 15
MOMENTUM_Z = 1.0


class Policy(Protocol):
    name: str

    def start_day(self, day: DayData) -> None: ...

    def act(self, obs: np.ndarray, day: DayData, bar: int) -> float: ...


class FlatPolicy:
    name = "flat"

    def start_day(self, day: DayData) -> None:
        pass

    def act(self, obs, day, bar) -> float:
        return 0.0


class AlwaysCallPolicy(FlatPolicy):
    name = "always_call"

    def act(self, obs, day, bar) -> float:
        return 1.0


class RandomPolicy:
    """Switches to a uniformly random *other* decision with probability ``switch_rate`` per bar."""

    def __init__(self, switch_rate: float, seed: int):
        if not 0.0 <= switch_rate <= 1.0:
            raise ValueError(f"switch_rate must be in [0, 1], got {switch_rate!r}")
        self.name = f"random[{seed}]"
        self.switch_rate = switch_rate
        self._rng = np.random.default_rng(seed)
        self._current = 0.0

    def start_day(self, day: DayData) -> None:
        self._current = 0.0

    def act(self, obs, day, bar) -> float:
        if self._rng.random() < self.switch_rate:
            others = [a for a in (-1.0, 0.0, 1.0) if a != self._current]
            self._current = others[int(self._rng.integers(2))]
        return self._current


class MomentumPolicy:
    name = "momentum"

    def __init__(self, lookback: int = MOMENTUM_LOOKBACK, z: float = MOMENTUM_Z):
        self.lookback, self.z = lookback, z

    def start_day(self, day: DayData) -> None:
        self._scale = minute_sigma(day.context.vix) * math.sqrt(self.lookback)

    def act(self, obs, day, bar) -> float:
        if bar < self.lookback:
            return 0.0
        move = math.log(day.closes[bar] / day.closes[bar - self.lookback]) / self._scale  # bars <= t only
        return 1.0 if move > self.z else (-1.0 if move < -self.z else 0.0)


class SignalPolicy:
    """A SignalModel as an evaluation policy: its smoothed score ``P(call) − P(put)`` is the
    env's action, so the env's ±threshold turns it into the decision the session would take."""

    def __init__(self, signal, name: str = "model"):
        self.signal = signal
        self.name = name

    def start_day(self, day: DayData) -> None:
        self.signal.reset()

    def act(self, obs, day, bar) -> float:
        return self.signal.predict(obs, _timestamp(day, bar)).smoothed_action


def _timestamp(day: DayData, bar: int) -> pd.Timestamp:
    return pd.Timestamp(int(day.timestamps[bar]), tz="UTC")


@dataclass
class PolicyResult:
    name: str
    daily_pnl: list[float]
    trades: list[int]
    bars_flat: list[int]
    bars: list[int]
    changes: list[int]  # decision changes (entries, exits, reversals)
    capital: float

    @property
    def total_return(self) -> float:
        return float(np.sum(self.daily_pnl) / self.capital)

    @property
    def sharpe(self) -> float:
        r = np.asarray(self.daily_pnl) / self.capital
        sd = r.std(ddof=1) if len(r) > 1 else 0.0
        return float(r.mean() / sd * math.sqrt(252)) if sd > 0 else 0.0

    @property
    def max_drawdown(self) -> float:
        equity = self.capital + np.concatenate([[0.0], np.cumsum(self.daily_pnl)])
        peak = np.maximum.accumulate(equity)
        return float(np.max((peak - equity) / peak))

    @property
    def trades_per_day(self) -> float:
        return float(np.mean(self.trades))

    @property
    def pct_flat(self) -> float:
        return float(100.0 * np.sum(self.bars_flat) / max(np.sum(self.bars), 1))

    @property
    def switch_rate(self) -> float:
        return float(np.sum(self.changes) / max(np.sum(self.bars), 1))

    def summary(self) -> dict[str, float]:
        return {
            "total_return": self.total_return,
            "sharpe": self.sharpe,
            "max_drawdown": self.max_drawdown,
            "trades_per_day": self.trades_per_day,
            "pct_flat": self.pct_flat,
            "mean_daily_pnl": float(np.mean(self.daily_pnl)),
        }


def run_policy(policy: Policy, days: Sequence[DayData], env_config: EnvConfig | None = None) -> PolicyResult:
    """Run ``policy`` over whole sessions (from the first bar to the flatten bar)."""
    config = _full_day(env_config)
    env = TradingEnv(list(days), config=config)
    result = PolicyResult(policy.name, [], [], [], [], [], config.capital)
    for i, day in enumerate(days):
        obs, info = env.reset(options={"day": i, "start": 0})
        policy.start_day(day)
        bar, pnl, flat, changes, position, done = info["bar"], 0.0, 0, 0, 0, False
        while not done:
            obs, _, done, _, step = env.step(np.array([policy.act(obs, day, bar)], dtype=np.float32))
            bar = step["bar"]
            pnl += step["pnl"]
            flat += step["position"] == 0
            changes += step["position"] != position
            position = step["position"]
        result.daily_pnl.append(pnl)
        result.trades.append(step["trades"])
        result.bars_flat.append(int(flat))
        result.bars.append(step["episode_bars"])
        result.changes.append(changes)
    return result


def _full_day(env_config: EnvConfig | None) -> EnvConfig:
    values = (env_config or EnvConfig()).as_dict()
    values.update(episode_bars=None, random_start=False)
    return EnvConfig.from_dict(values)


@dataclass
class Evaluation:
    model: PolicyResult
    baselines: dict[str, PolicyResult]
    random_runs: list[PolicyResult]
    eval_days: list[date]
    promotable: bool = field(init=False)
    reason: str = field(init=False)

    def __post_init__(self) -> None:
        model = self.model.total_return
        random_mean = self.random_mean_return
        beats_flat = model > 0.0
        beats_random = model > random_mean
        self.promotable = beats_flat and beats_random
        self.reason = (
            f"return {model:+.2%} vs flat +0.00% ({'beats' if beats_flat else 'does not beat'}) and "
            f"random {random_mean:+.2%} ({'beats' if beats_random else 'does not beat'}) "
            f"over {len(self.eval_days)} out-of-sample days"
        )

    @property
    def random_mean_return(self) -> float:
        return float(np.mean([r.total_return for r in self.random_runs]))

    def table(self) -> dict[str, dict[str, float]]:
        rows = {self.model.name: self.model.summary()}
        for name, result in self.baselines.items():
            rows[name] = result.summary()
        summaries = [r.summary() for r in self.random_runs]
        rows["random"] = {k: float(np.mean([s[k] for s in summaries])) for k in summaries[0]}
        rows["random"]["total_return_std"] = float(np.std([s["total_return"] for s in summaries]))
        return rows

    def markdown(self) -> str:
        lines = [
            "| policy | return | Sharpe | max DD | trades/day | % flat |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, m in self.table().items():
            lines.append(
                f"| {name} | {m['total_return']:+.2%} | {m['sharpe']:.2f} | {m['max_drawdown']:.2%} | "
                f"{m['trades_per_day']:.1f} | {m['pct_flat']:.0f}% |"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "promotable": self.promotable,
            "reason": self.reason,
            "eval_days": [d.isoformat() for d in self.eval_days],
            "table": self.table(),
            "daily_pnl": {self.model.name: self.model.daily_pnl, **{k: v.daily_pnl for k, v in self.baselines.items()}},
        }

    def chart_png(self) -> bytes:
        """Cumulative P&L per policy over the evaluation days, as PNG bytes."""
        series = {r.name: r.daily_pnl for r in [self.model, *self.baselines.values(), self.random_runs[0]]}
        return cumulative_pnl_png(self.eval_days, series, self.model.name)

    def chart_markdown(self) -> str:
        return f"![cumulative P&L](data:image/png;base64,{base64.b64encode(self.chart_png()).decode()})"

    def save_chart(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.chart_png())
        return path


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


def evaluate_signal(
    signal,
    days: Sequence[DayData],
    env_config: EnvConfig | None = None,
    train_days: Iterable[date] = (),
    random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
    name: str = "model",
) -> Evaluation:
    """Evaluate a SignalModel on out-of-sample ``days`` (none may be in ``train_days``)."""
    days = list(days)
    if not days:
        raise ValueError("days: an evaluation needs at least one day, got none")
    overlap = sorted({d.day for d in days} & set(train_days))
    if overlap:
        raise ValueError(f"days: {len(overlap)} evaluation days were trained on (first {overlap[0]}); "
                         "evaluate out of sample only")
    if not random_seeds:
        raise ValueError("random_seeds: need at least one seed for the random baseline, got none")
    model = run_policy(SignalPolicy(signal, name), days, env_config)
    baselines = {p.name: run_policy(p, days, env_config) for p in (FlatPolicy(), AlwaysCallPolicy(), MomentumPolicy())}
    random_runs = [run_policy(RandomPolicy(model.switch_rate, seed), days, env_config) for seed in random_seeds]
    return Evaluation(model, baselines, random_runs, [d.day for d in days])


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
