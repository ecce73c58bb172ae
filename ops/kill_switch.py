"""``kill_switch_job``: set the kill switch from the Dagster UI (Launchpad config {on, reason}).

The same switch as ``tradenova kill-switch``: DuckDB holds it (with its history) and every
running session sees the change on its next check.
"""

import dagster as dg
from pydantic import Field

from resources.risk import RiskResource
from tradenova_dagster.risk.kill_switch import GLOBAL


class KillSwitchConfig(dg.Config):
    on: bool = Field(description="true: stop every new entry; false: allow entries again")
    reason: str = Field(default="", description="why (required to turn it on); recorded in the history")
    account: str = Field(default=GLOBAL, description="'*' for every account, or one account such as sim:default")


@dg.op(description="Turn the kill switch on or off and record who did it and why.")
def set_kill_switch(context: dg.OpExecutionContext, config: KillSwitchConfig, risk: RiskResource) -> dg.Output:
    switch = risk.kill_switch(account=config.account)
    if config.on:
        state = switch.turn_on(config.reason, set_by=f"dagster run {context.run_id}", run_id=context.run_id)
    else:
        state = switch.turn_off(config.reason or "turned off from the Dagster UI",
                                set_by=f"dagster run {context.run_id}", run_id=context.run_id)
    context.log.info(state.describe())
    return dg.Output(
        state.on,
        metadata={"account": state.account, "on": state.on, "reason": state.reason, "set_by": state.set_by,
                  "set_at": state.set_at.isoformat()},
    )


@dg.job(description="Set the TradeNova kill switch: config {on: bool, reason: str}.")
def kill_switch_job():
    set_kill_switch()
