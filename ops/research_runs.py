"""The jobs behind ``tradenova train``, ``tradenova evaluate --walk-forward`` and
``tradenova report``, and the command side that launches and follows them.

Each job is one op whose config is the command's options (so the UI's launchpad takes the
same options the command line does) and which calls the same plain function the command
always ran (``rl.commands.train``, ``rl.commands.walk_forward``,
``metrics.commands.report``). The op logs one ``PROGRESS`` line per step (what the
command's progress bar counts) and stores the lines the command prints as its output's
``summary`` metadata: the command prints what the run stored, whoever ran it.

Tags: ``tradenova/job`` names the kind of work, with the values the production profile's
queue limits key on (``deploy/profile.py``: ``training`` runs one at a time; a walk-forward
trains models too, so it counts as training); the command adds the run's source, agent or
account, as ``tradenova backtest`` does.
"""


import dagster as dg

from tradenova_dagster.strategies import BASELINES

from ops.launch import PROGRESS, QUIET, Launcher, progress_bar

JOB_TAG = "tradenova/job"  # the tag deploy/profile.py's limits read
TRAINING = "training"


class TrainConfig(dg.Config):
    """``tradenova train``'s options (see ``tradenova train --help``)."""

    agent: str = "ppo"
    symbol: str = "SPY"
    timesteps: int = 100_000
    seed: int = 0
    train_days: int = 60
    eval_days: int = 20
    end: str = ""  # last evaluation session; empty: the last completed one
    source: str = "synthetic"
    data_dir: str = ""
    promote: bool = False


class WalkForwardConfig(dg.Config):
    """``tradenova evaluate --walk-forward``'s options (see its ``--help``)."""

    evaluation_id: str
    start: str
    end: str
    folds: int = 3
    train_days: int = 40
    eval_days: int = 10
    seeds: int = 5
    agents: list[str] = ["ppo", "grpo"]
    baselines: list[str] = list(BASELINES)
    timesteps: int = 20_000
    symbol: str = "SPY"
    source: str = "synthetic"
    data_dir: str = ""


class ReportConfig(dg.Config):
    """``tradenova report``'s options (see ``tradenova report --help``)."""

    accounts: list[str] = ["sim:default"]
    date: str = ""
    start: str = ""
    tearsheet: bool = False
    source: str = ""
    initial_capital: float = 100_000.0
    lookback_days: int = 30
    db: str = ""


def _summary(lines: list[str]) -> dg.Output:
    return dg.Output(None, metadata={"summary": dg.MetadataValue.text("\n".join(lines))})


def _step(context: dg.OpExecutionContext):
    return lambda what: context.log.info(f"{PROGRESS} {what}")


@dg.op(description="Train one agent on the sessions before a held-out window, register it, and evaluate it "
       "on the held-out days against the baselines (the promotion gate).")
def train_model_op(context: dg.OpExecutionContext, config: TrainConfig) -> dg.Output:
    from tradenova_dagster.rl.commands import train

    return _summary(train(config.model_dump(), step=_step(context)))


@dg.op(description="Walk-forward evaluation: per fold and seed, train on the fold's window only, then replay "
       "its unseen days next to the baselines; one result file per run and a summary.")
def walk_forward_op(context: dg.OpExecutionContext, config: WalkForwardConfig) -> dg.Output:
    from tradenova_dagster.rl.commands import walk_forward

    return _summary(walk_forward(config.model_dump(), step=_step(context)))


@dg.op(description="The daily report of an account, or the tearsheet of one or more accounts over a span.")
def report_op(context: dg.OpExecutionContext, config: ReportConfig) -> dg.Output:
    from tradenova_dagster.metrics.commands import report

    lines = report(config.model_dump())
    _step(context)("report written")
    return _summary(lines)


@dg.job(tags={JOB_TAG: TRAINING}, description="What `tradenova train` runs: train, register, evaluate one model.")
def train_job():
    train_model_op()


@dg.job(tags={JOB_TAG: TRAINING}, description="What `tradenova evaluate --walk-forward` runs.")
def walk_forward_job():
    walk_forward_op()


@dg.job(tags={JOB_TAG: "report"}, description="What `tradenova report` runs: a daily report or a tearsheet.")
def report_job():
    report_op()


# command -> (job, op, the run's own tags from the options)
COMMANDS = {
    "train": (train_job, "train_model_op", lambda o: {"tradenova/source": o["source"], "tradenova/agent": o["agent"],
                                                      "tradenova/symbol": o["symbol"]}),
    "evaluate": (walk_forward_job, "walk_forward_op", lambda o: {"tradenova/source": o["source"],
                                                                 "tradenova/evaluation": o["evaluation_id"]}),
    "report": (report_job, "report_op", lambda o: {"tradenova/account": ",".join(o["accounts"])}),
}
JOBS = [train_job, walk_forward_job, report_job]


def follow_command(command: str, options: dict, *, total: int, unit: str, no_progress: bool) -> int:
    """Launch the command's run on the instance in DAGSTER_HOME, follow it with a progress
    bar, and print the summary it stored; a run that fails is a RuntimeError naming it."""
    from tradenova_dagster import config

    job, op, tags = COMMANDS[command]
    config.use_dagster_home()
    with dg.DagsterInstance.get() as instance, Launcher(instance) as launcher:
        bar, progress = progress_bar(total, f"tradenova {command}", unit, no_progress)
        with bar:
            finished = launcher.run(job.name, {"ops": {op: {"config": options}}, **QUIET}, tags(options),
                                    progress=progress)
    if not finished.success:
        raise RuntimeError(finished.failure(f"{command} failed"))
    print(finished.metadata["summary"])
    return 0
