"""The one place that assembles TradeNova's Dagster definitions (DESIGN.md §1).

Everything else under ``tradenova_dagster/`` is plain Python; the Dagster layer lives in
the top-level folders ``assets/``, ``ops/``, ``resources/``, ``schedules/``, ``sensors/``.
"""

import dagster as dg

import assets
from ops.asset_jobs import ASSET_JOBS
from ops.kill_switch import kill_switch_job
from ops.trading import JOBS as TRADING_JOBS
from resources.broker import BrokerResource
from resources.market_data import MarketDataResource
from resources.risk import RiskResource
from resources.secrets import optional_env_var
from resources.store import StoreResource
from schedules import SCHEDULES
from sensors import SENSORS

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=[*TRADING_JOBS, *ASSET_JOBS, kill_switch_job],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={
        "store": StoreResource(),
        "broker": BrokerResource(
            mode=dg.EnvVar("TRADENOVA_BROKER_MODE").get_value("sim"),
            api_key=optional_env_var("ALPACA_API_KEY"),
            secret_key=optional_env_var("ALPACA_SECRET_KEY"),
        ),
        "risk": RiskResource(),
        "market_data": MarketDataResource(
            source=dg.EnvVar("TRADENOVA_DATA_SOURCE").get_value("synthetic"),
            data_dir=dg.EnvVar("TRADENOVA_DATA_DIR").get_value(),
            api_key=optional_env_var("ALPACA_API_KEY"),
            secret_key=optional_env_var("ALPACA_SECRET_KEY"),
        ),
    },
)
