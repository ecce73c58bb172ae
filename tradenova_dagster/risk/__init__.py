"""The risk framework: whether a trade may happen, how it ends, and the kill switch.

- ``AdvancedRiskManager`` — the entry rules (daily loss, loss streak, drawdown, IV rank,
  VIX, spread, position limits, kill switch); exits are always allowed.
- ``ProfitManager`` — the take-profit ladder, trailing stop and stop loss (whole units).
- ``KillSwitch`` — the global (or per-account) switch, cheap to read in a hot loop.

State is shared across processes through DuckDB when a ``Store`` is given; see
``state.py`` for how reads stay cheap.
"""

from tradenova_dagster.risk.kill_switch import GLOBAL, KillSwitch, KillSwitchState
from tradenova_dagster.risk.manager import AdvancedRiskManager, RiskLevel, RiskLimits
from tradenova_dagster.risk.ladder_config import DEFAULT_LEVELS, LadderConfig, TakeProfitLevel
from tradenova_dagster.risk.profit import ProfitManager
from tradenova_dagster.risk.state import LadderPosition, RiskEvent, RiskState

__all__ = [
    "AdvancedRiskManager",
    "DEFAULT_LEVELS",
    "GLOBAL",
    "KillSwitch",
    "KillSwitchState",
    "LadderConfig",
    "LadderPosition",
    "ProfitManager",
    "RiskEvent",
    "RiskLevel",
    "RiskLimits",
    "RiskState",
    "TakeProfitLevel",
]
