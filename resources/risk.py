"""The risk framework as a Dagster resource: every threshold in one place, checked at load."""

from __future__ import annotations

from typing import List, Optional

import dagster as dg
from pydantic import model_validator

from tradenova_dagster.ledger.accounts import ledger_store, shared_store
from tradenova_dagster.store import Store
from tradenova_dagster.risk import (
    DEFAULT_LEVELS,
    AdvancedRiskManager,
    KillSwitch,
    LadderConfig,
    ProfitManager,
    RiskLimits,
    TakeProfitLevel,
)
from tradenova_dagster.risk.kill_switch import GLOBAL
from tradenova_dagster.risk.state import Clock


class RiskResource(dg.ConfigurableResource):
    """The rules of DESIGN.md §4, each configurable; defaults are the seed's numbers.

    Percentages are fractions (0.02 = 2%). Invalid values (a negative limit, a percentage
    above 1, take-profit gains out of order...) are refused when the resource is built,
    with a message naming the field and the value, not in the middle of a session.
    Risk state and the ladder live in the account's ledger file (``ledger/accounts.py``),
    the kill switch in the shared database ``db_path`` (default
    ``$TRADENOVA_HOME/tradenova.duckdb``), unless a ``Store`` is passed to the builders.
    """

    initial_balance: float = 100_000.0
    # The limits' defaults are RiskLimits' own (one source of truth for DESIGN.md §4).
    daily_loss_limit_pct: float = RiskLimits.daily_loss_limit_pct
    max_drawdown_pct: float = RiskLimits.max_drawdown_pct
    max_loss_streak: int = RiskLimits.max_loss_streak
    max_iv_rank: float = RiskLimits.max_iv_rank
    max_vix: float = RiskLimits.max_vix
    max_spread_pct: float = RiskLimits.max_spread_pct
    max_position_pct: float = RiskLimits.max_position_pct
    max_open_positions: int = RiskLimits.max_open_positions
    # The ladder's defaults are LadderConfig's own (risk.ladder_config.DEFAULT_LEVELS).
    take_profit_gains: List[float] = [level.gain_pct for level in DEFAULT_LEVELS]
    take_profit_fractions: List[float] = [level.sell_fraction for level in DEFAULT_LEVELS]
    stop_loss_pct: float = LadderConfig.stop_loss_pct
    trail_arm_pct: float = LadderConfig.trail_arm_pct
    trail_floor_pct: float = LadderConfig.trail_floor_pct
    trail_pct: float = LadderConfig.trail_pct
    kill_switch_max_age_s: float = 30.0  # how long a cached risk state is trusted without a change signal
    flush_interval_s: float = 5.0
    db_path: Optional[str] = None

    @model_validator(mode="after")
    def _validate(self) -> "RiskResource":
        try:
            self.limits()
            self.ladder()
            if not self.initial_balance > 0:
                raise ValueError(f"initial_balance must be > 0, got {self.initial_balance!r}")
            for name in ("kill_switch_max_age_s", "flush_interval_s"):
                value = getattr(self, name)
                if not value >= 0:
                    raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
        except ValueError as exc:
            raise ValueError(f"invalid risk resource config: {exc}") from None
        return self

    def limits(self) -> RiskLimits:
        return RiskLimits(
            daily_loss_limit_pct=self.daily_loss_limit_pct,
            max_drawdown_pct=self.max_drawdown_pct,
            max_loss_streak=self.max_loss_streak,
            max_iv_rank=self.max_iv_rank,
            max_vix=self.max_vix,
            max_spread_pct=self.max_spread_pct,
            max_position_pct=self.max_position_pct,
            max_open_positions=self.max_open_positions,
        )

    def ladder(self) -> LadderConfig:
        gains, fractions = list(self.take_profit_gains), list(self.take_profit_fractions)
        if len(gains) != len(fractions):
            raise ValueError(
                f"take_profit_gains ({len(gains)} values) and take_profit_fractions ({len(fractions)} values) "
                f"must have the same length"
            )
        levels = tuple(TakeProfitLevel(f"TP{i + 1}", g, f) for i, (g, f) in enumerate(zip(gains, fractions)))
        return LadderConfig(levels, self.stop_loss_pct, self.trail_arm_pct, self.trail_floor_pct, self.trail_pct)

    def get_store(self) -> Store:
        """The shared database, where the kill switch lives."""
        return shared_store(self.db_path)

    def build_manager(self, account: str = "sim:default", store: Store | None = None, run_id: str | None = None,
                      clock: Clock | None = None, kill_switch: KillSwitch | None = None) -> AdvancedRiskManager:
        """The risk manager of ``account``, its state in the account's ledger (``store``,
        default the ledger file). Pass the run's ``kill_switch`` so that the manager and the
        session read one switch (default: the shared one)."""
        return AdvancedRiskManager.from_limits(
            self.limits(), self.initial_balance, store=store or ledger_store(account), account=account, run_id=run_id,
            clock=clock, flush_interval_s=self.flush_interval_s, max_age_s=self.kill_switch_max_age_s,
            kill_switch=kill_switch or self.kill_switch(account),
        )

    def build_profit_manager(self, account: str = "sim:default", store: Store | None = None,
                             run_id: str | None = None, clock: Clock | None = None) -> ProfitManager:
        """The take-profit ladder of ``account``, its state in the account's ledger."""
        return ProfitManager.from_config(self.ladder(), store=store or ledger_store(account), account=account,
                                         run_id=run_id, clock=clock, flush_interval_s=self.flush_interval_s)

    def kill_switch(self, account: str = GLOBAL, store: Store | None = None) -> KillSwitch:
        return KillSwitch(store or self.get_store(), account=account)
