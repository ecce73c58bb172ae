"""The one place that assembles TradeNova's Dagster definitions (DESIGN.md §1).

Everything else under ``tradenova_dagster/`` is plain Python; the Dagster layer lives in
the top-level folders ``assets/``, ``ops/``, ``resources/``, ``schedules/``, ``sensors/``.
"""

import dagster as dg

import assets
from ops.asset_jobs import ASSET_JOBS
from ops.demo import JOBS as DEMO_JOBS
from ops.kill_switch import kill_switch_job
from ops.research_runs import JOBS as RESEARCH_JOBS
from ops.sweep_runs import JOBS as SWEEP_JOBS
from ops.trading import JOBS as TRADING_JOBS
from resources.broker import BrokerResource
from resources.market_data import MarketDataResource
from resources.risk import RiskResource
from resources.store import StoreResource
from schedules import SCHEDULES
from sensors import SENSORS

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=[*TRADING_JOBS, *ASSET_JOBS, kill_switch_job, *RESEARCH_JOBS, *SWEEP_JOBS, *DEMO_JOBS],
    schedules=SCHEDULES,
    sensors=SENSORS,
    # No values here: Dagster drops a resource's values set in Definitions as a whole when
    # a run config names that resource. Each resource fills the fields run config leaves
    # unset from its environment variables when the run builds it (run config > environment
    # > default, field by field; resources/secrets.py), and reads Alpaca's keys only when
    # it builds a client, so they never become config.
    resources={
        "store": StoreResource(),
        "broker": BrokerResource(),
        "risk": RiskResource(),
        "market_data": MarketDataResource(),
    },
)
