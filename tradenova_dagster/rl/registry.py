"""Where trained models live, how they were evaluated, and which one trades.

Each model is a folder ``$TRADENOVA_HOME/models/<model_id>/`` holding ``model.zip`` (the
stable-baselines3 model), ``vecnormalize.pkl`` (its frozen observation statistics) and
``meta.json`` (agent, symbol, training days, hyperparameters, env config, and the
checkpoint ``format_version``), plus a row in DuckDB's ``models`` table.

Format versions: 1 (no ``format_version`` in meta.json) is the seed's Gaussian policy
with a continuous action; 2 (``FORMAT_VERSION``) the categorical PUT / FLAT / CALL policy
(``rl.discrete``). A checkpoint of another version, or one whose files do not load, is
refused by ``load_checkpoint`` with the reason, and ``promote`` loads a model before
promoting it, so a corrupt checkpoint never replaces the model an account trades. ``model_evaluations`` keeps every out-of-sample evaluation
with its promotable verdict, and ``model_promotions`` says which model each account
trades: the latest promotion for (account, symbol), falling back to the ``global`` one.

``promote`` refuses a model whose latest evaluation did not pass (unless told to force),
so what the promotion sensor promotes is always a model that beat flat and random.
"""

from __future__ import annotations

import json
import pickle
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from tradenova_dagster import config
from tradenova_dagster.domain import require_symbol
from tradenova_dagster.ledger.accounts import shared_store
from tradenova_dagster.store import Store

GLOBAL_ACCOUNT = "global"
MODEL_FILE = "model.zip"
VECNORM_FILE = "vecnormalize.pkl"
META_FILE = "meta.json"
AGENTS = ("ppo", "grpo")
FORMAT_VERSION = 2  # the categorical PUT / FLAT / CALL policy; 1 was the seed's continuous one


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    agent: str
    symbol: str
    path: Path
    created_at: datetime
    timesteps: int
    seed: int | None
    train_start: date
    train_end: date
    n_train_days: int
    env_steps_per_s: float | None = None
    final_train_reward: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def train_days(self) -> list[date]:
        return [date.fromisoformat(d) for d in self.meta.get("train_days", [])]


_COLUMNS = (
    "model_id, agent, symbol, path, created_at, timesteps, seed, train_start, train_end, "
    "n_train_days, env_steps_per_s, final_train_reward, meta"
)


def _record(row) -> ModelRecord:
    values = list(row)
    values[3] = Path(values[3])
    values[-1] = json.loads(values[-1])
    return ModelRecord(*values)


def _store(store: Store | None) -> Store:
    return store if store is not None else shared_store()


def require_agent(agent: str) -> str:
    value = str(agent).strip().lower()
    if value not in AGENTS:
        raise ValueError(f"agent: unknown value {agent!r}; expected one of {', '.join(AGENTS)}")
    return value


def new_model_id(agent: str, symbol: str) -> str:
    """``<agent>-<symbol>-<UTC time>-<random>``: sortable by time, unique across processes."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{require_agent(agent)}-{require_symbol('symbol', symbol)}-{stamp}-{secrets.token_hex(3)}"


def model_dir(model_id: str) -> Path:
    return config.models_dir() / model_id


def save_model(
    model,
    vec_normalize,
    *,
    agent: str,
    symbol: str,
    timesteps: int,
    seed: int | None,
    train_days: list[date],
    meta: dict[str, Any],
    env_steps_per_s: float | None = None,
    final_train_reward: float | None = None,
    model_id: str | None = None,
    run_id: str | None = None,
    store: Store | None = None,
) -> ModelRecord:
    """Write the model's files and register it; returns its record.

    Files are written first and the row last (in one transaction), so a registered model
    always has its files; a crash in between leaves an unregistered folder, never a row
    pointing at nothing.
    """
    from tradenova_dagster.rl.discrete import is_categorical

    agent = require_agent(agent)
    symbol = require_symbol("symbol", symbol)
    space = getattr(model, "action_space", None)
    if not is_categorical(space):
        raise ValueError(f"model: action space {space} is not the categorical PUT/FLAT/CALL policy (Discrete(3)) "
                         f"that checkpoint format version {FORMAT_VERSION} stores; train through rl.discrete.DiscreteActions")
    if not train_days:
        raise ValueError("train_days: a model must name the days it was trained on, got none")
    model_id = model_id or new_model_id(agent, symbol)
    folder = model_dir(model_id)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    vec_normalize.save(str(folder / VECNORM_FILE))
    days = sorted(train_days)
    meta = {**meta, "agent": agent, "symbol": symbol, "train_days": [d.isoformat() for d in days],
            "format_version": FORMAT_VERSION}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    with _store(store).transaction() as con:
        con.execute(
            "INSERT INTO models (model_id, agent, symbol, path, timesteps, seed, train_start, train_end, "
            "n_train_days, env_steps_per_s, final_train_reward, meta, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [model_id, agent, symbol, str(folder), int(timesteps), seed, days[0], days[-1], len(days),
             env_steps_per_s, final_train_reward, json.dumps(meta, default=str), run_id],
        )
    return get_model(model_id, store)


def get_model(model_id: str, store: Store | None = None) -> ModelRecord:
    rows = _store(store).query(f"SELECT {_COLUMNS} FROM models WHERE model_id = ?", [model_id])
    if not rows:
        raise ValueError(f"model_id: no model {model_id!r} is registered")
    return _record(rows[0])


def list_models(symbol: str | None = None, agent: str | None = None, store: Store | None = None) -> list[ModelRecord]:
    """Registered models, newest first."""
    sql = f"SELECT {_COLUMNS} FROM models WHERE (? IS NULL OR symbol = ?) AND (? IS NULL OR agent = ?) ORDER BY created_at DESC"
    symbol = symbol.upper() if symbol else None
    agent = require_agent(agent) if agent else None
    return [_record(r) for r in _store(store).query(sql, [symbol, symbol, agent, agent])]


def record_evaluation(
    model_id: str,
    *,
    eval_days: list[date],
    promotable: bool,
    reason: str,
    metrics: dict[str, Any],
    run_id: str | None = None,
    store: Store | None = None,
) -> None:
    get_model(model_id, store)  # refuses an unknown model
    if not eval_days:
        raise ValueError("eval_days: an evaluation needs at least one day, got none")
    days = sorted(eval_days)
    _store(store).execute(
        "INSERT INTO model_evaluations (model_id, eval_start, eval_end, n_days, promotable, reason, metrics, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [model_id, days[0], days[-1], len(days), bool(promotable), reason, json.dumps(metrics, default=str), run_id],
    )


def latest_evaluation(model_id: str, store: Store | None = None) -> dict[str, Any] | None:
    rows = _store(store).query(
        "SELECT evaluated_at, eval_start, eval_end, n_days, promotable, reason, metrics FROM model_evaluations "
        "WHERE model_id = ? ORDER BY evaluated_at DESC LIMIT 1",
        [model_id],
    )
    if not rows:
        return None
    evaluated_at, start, end, n_days, promotable, reason, metrics = rows[0]
    return {
        "evaluated_at": evaluated_at, "eval_start": start, "eval_end": end, "n_days": n_days,
        "promotable": bool(promotable), "reason": reason, "metrics": json.loads(metrics),
    }


def promote(
    model_id: str,
    *,
    account: str = GLOBAL_ACCOUNT,
    reason: str = "",
    force: bool = False,
    run_id: str | None = None,
    store: Store | None = None,
) -> ModelRecord:
    """Make ``model_id`` the model ``account`` trades for its symbol.

    Refused (ValueError) when the model's latest evaluation is missing or not promotable,
    unless ``force`` (a person's explicit choice, recorded in ``reason``).
    """
    record = get_model(model_id, store)
    if not account or not str(account).strip():
        raise ValueError(f"account: expected a non-empty account name, got {account!r}")
    load_checkpoint(record.path)  # a checkpoint that does not load is never promoted, even by force
    if not force:
        evaluation = latest_evaluation(model_id, store)
        if evaluation is None:
            raise ValueError(f"model {model_id}: no out-of-sample evaluation yet; evaluate it before promoting")
        if not evaluation["promotable"]:
            raise ValueError(f"model {model_id}: not promotable ({evaluation['reason']})")
    _store(store).execute(
        "INSERT INTO model_promotions (account, symbol, model_id, reason, run_id) VALUES (?, ?, ?, ?, ?)",
        [account, record.symbol, model_id, reason or ("forced" if force else "passed evaluation"), run_id],
    )
    return record


def promoted_model(symbol: str = "SPY", account: str | None = None, store: Store | None = None) -> ModelRecord | None:
    """The model ``account`` trades for ``symbol`` (its own promotion, else the global one)."""
    promotion = _promotion(symbol, account, store)
    return get_model(promotion[0], store) if promotion else None


def _promotion(symbol: str, account: str | None, store: Store | None) -> tuple[str, datetime] | None:
    """(model_id, promoted_at) of the latest promotion for ``account``, else the global one."""
    symbol = require_symbol("symbol", symbol)
    for acct in [a for a in (account, GLOBAL_ACCOUNT) if a]:
        rows = _store(store).query(
            "SELECT model_id, promoted_at FROM model_promotions WHERE account = ? AND symbol = ? "
            "ORDER BY promoted_at DESC LIMIT 1", [acct, symbol])
        if rows:
            return rows[0][0], rows[0][1]
    return None


def tradable_model(symbol: str = "SPY", account: str | None = None,
                   store: Store | None = None) -> tuple[ModelRecord | None, str]:
    """The promoted model ``account`` may trade today, or None and why not (the session then
    trades FLAT). None when no model is promoted, or when the promoted model's latest
    evaluation came after its promotion and failed the gate: a re-evaluation that finds no
    edge any more withdraws the model. A forced promotion (a person's explicit choice)
    stands until something is evaluated after it."""
    promotion = _promotion(symbol, account, store)
    if promotion is None:
        return None, f"no model is promoted for {symbol} (account {account or GLOBAL_ACCOUNT})"
    model_id, promoted_at = promotion
    evaluation = latest_evaluation(model_id, store)
    if evaluation is not None and not evaluation["promotable"] and evaluation["evaluated_at"] > promoted_at:
        return None, (f"the promoted model {model_id} failed the gate when evaluated on {evaluation['eval_start']} .. "
                      f"{evaluation['eval_end']} after its promotion ({evaluation['reason']})")
    return get_model(model_id, store), ""


def read_meta(path: str | Path) -> dict[str, Any]:
    """A model folder's meta.json; ValueError naming the file if it is missing or unreadable."""
    file = Path(path) / META_FILE
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint {file}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint {file}: expected a JSON object, got {type(meta).__name__}")
    return meta


def load_checkpoint(path: str | Path) -> tuple[Any, Any, dict[str, Any]]:
    """Load a model folder to predict with: ``(policy, vec_normalize, meta)``, the policy
    the stable-baselines3 algorithm trained (PPO's or GRPO's), not the algorithm.

    ValueError, naming the folder, when it holds no model, when its format version is not
    ``FORMAT_VERSION`` (saying which it found), or when a file does not load (corrupt,
    truncated, or not the categorical policy its meta.json claims).
    """
    from tradenova_dagster.rl.discrete import is_categorical

    path = Path(path)
    if not (path / MODEL_FILE).is_file():
        raise ValueError(f"path: {path} holds no {MODEL_FILE}")
    meta = read_meta(path)
    found = meta.get("format_version", 1)
    if found != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path}: format version {found!r}, expected {FORMAT_VERSION} (the categorical PUT/FLAT/CALL "
            "policy); this model was saved by an older TradeNova and cannot be loaded: train a new one "
            "(tradenova train --agent ppo|grpo)"
        )
    agent = meta.get("agent")
    try:
        model = _load_policy(agent, path / MODEL_FILE)
        with open(path / VECNORM_FILE, "rb") as f:
            vec_normalize = pickle.load(f)  # the statistics only; no env needed to normalise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, the checkpoint is unusable
        raise ValueError(f"checkpoint {path}: corrupt or unreadable {agent} model files ({exc!r})") from exc
    if not is_categorical(model.action_space):
        raise ValueError(f"checkpoint {path}: action space {model.action_space} is not the categorical "
                         f"PUT/FLAT/CALL policy its format version {FORMAT_VERSION} promises")
    return model, vec_normalize, meta


class _NoOptimizer:
    """Stands in for the optimiser of a policy loaded to predict, which is never stepped."""

    def __init__(self, params, **kwargs):
        pass


def _load_policy(agent: str, file: Path):
    """The policy saved in an SB3 model file, its weights loaded exactly (strict).

    ``PPO.load``/``GRPO.load`` would rebuild the whole algorithm and its Adam optimiser,
    whose first parameter group imports ``torch._dynamo``: 1.2 s of every process that
    loads a model to trade, for an optimiser only training uses.
    """
    from stable_baselines3.common.save_util import load_from_zip_file

    require_agent(agent)
    data, params, _ = load_from_zip_file(file, device="cpu", print_system_info=False)
    policy_kwargs = {**(data.get("policy_kwargs") or {}), "optimizer_class": _NoOptimizer}
    policy = data["policy_class"](data["observation_space"], data["action_space"], lambda _: 0.0,
                                  use_sde=data.get("use_sde", False), **policy_kwargs)
    policy.load_state_dict(params["policy"])
    return policy.to("cpu")
