"""`adaptive-lr` command line. Heavy libraries (torch, Lightning, MLflow) are imported only inside commands, so
`adaptive-lr --help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from adaptive_lr.config import compose
    from adaptive_lr.runner import run

    result = run(compose(args.overrides))
    print(f"run {result.run_id} FINISHED in {result.seconds:.1f}s: " +
          ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items())))
    print(f"run folder: {result.run_dir}")
    return 0


def _report(experiment: str, overrides: Sequence[str]) -> Path:
    from adaptive_lr.config import ConfigError, compose
    from adaptive_lr.reporting import NoRunsError, write_report
    from adaptive_lr.tracking.run import resolve_tracking_uri

    cfg = compose(overrides)
    uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))
    from adaptive_lr.experiment import attach_report

    try:
        report = write_report(experiment, uri, Path(cfg.paths.reports), tau_max=cfg.report.tau_max,
                              alpha=cfg.report.alpha)
    except NoRunsError as err:  # nothing to report is bad input: one `error:` line and exit 2, not a traceback
        raise ConfigError(str(err)) from err
    attach_report(experiment, uri, report.parent)  # also in the MLflow UI, on the grid's parent run
    return report


def _cmd_experiment(args: argparse.Namespace) -> int:
    from adaptive_lr.experiment import ENGINES, run_grid

    engine = ENGINES[args.engine](args.jobs, **({"address": args.address} if args.address else {}))
    grid = run_grid(args.name, args.overrides, engine=engine)
    if args.report:
        print(f"report: {_report(grid.name, args.overrides)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from adaptive_lr.experiment import load_grid

    print(f"report: {_report(load_grid(args.name).name, args.overrides)}")
    return 0


def _run_folder(run: str, overrides: Sequence[str]) -> Path:
    """A run folder given as a path, or an MLflow run ID looked up in the configured store."""
    if Path(run).is_dir():
        return Path(run)
    from adaptive_lr.config import ConfigError, compose
    from adaptive_lr.tracking.run import resolve_tracking_uri

    cfg = compose(overrides)
    uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        folder = MlflowClient(uri).get_run(run).data.tags.get("run_dir", "")
    except MlflowException as err:
        raise ConfigError(f"{run!r} is neither a run folder nor a run ID in {uri}") from err
    if not folder or not Path(folder).is_dir():
        raise ConfigError(f"run {run} has no run folder on this machine ({folder or 'no run_dir tag'})")
    return Path(folder)


def _cmd_live(args: argparse.Namespace) -> int:
    from adaptive_lr.schedulers.live import write_command

    folder = _run_folder(args.run, args.overrides)
    command = write_command(folder, args.op, getattr(args, "value", None))
    what = "released to its scheduler" if command.op == "release" else f"{command.op} {command.value:g}"
    print(f"{folder}: LR {what} (command {command.seq}, applied at the run's next step)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptive-lr",
        description="Do learning-rate schedulers that react to training feedback beat fixed schedules?",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one run: adaptive-lr train task=digits scheduler=cosine seed=1")
    p.add_argument("overrides", nargs="*", help="Hydra-style overrides of configs/train.yaml")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("experiment", help="run a grid from experiments/<name>.yaml (finished cells are skipped)")
    p.add_argument("name", help="experiment name (experiments/<name>.yaml) or a path to a grid file")
    p.add_argument("overrides", nargs="*", help="overrides applied to every cell")
    p.add_argument("--report", action="store_true", help="write the comparison report afterwards")
    p.add_argument("-j", "--jobs", type=int, default=1, help="cells run in parallel worker processes (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where cells run: local processes, or Ray tasks (needs `uv sync --group scale`)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    p.set_defaults(func=_cmd_experiment)
    for name, op, help_text in (("set-lr", "set", "hold a running run's LR at VALUE (clamped to its bounds)"),
                                ("scale-lr", "scale", "hold a running run's LR at VALUE x its current LR")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("run", help="run folder (runs/<experiment>/<run>) or MLflow run ID")
        p.add_argument("value", type=float)
        p.add_argument("overrides", nargs="*", help="overrides locating the MLflow store (for a run ID)")
        p.set_defaults(func=_cmd_live, op=op)
    p = sub.add_parser("release-lr", help="hand a running run's LR back to its scheduler")
    p.add_argument("run", help="run folder (runs/<experiment>/<run>) or MLflow run ID")
    p.add_argument("overrides", nargs="*", help="overrides locating the MLflow store (for a run ID)")
    p.set_defaults(func=_cmd_live, op="release")
    p = sub.add_parser("report", help="write reports/<name>/<timestamp>/report.md from the logged runs")
    p.add_argument("name", help="experiment name")
    p.add_argument("overrides", nargs="*", help="overrides (e.g. paths.root=... or logger.tracking_uri=...)")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from adaptive_lr.config import ConfigError
    from adaptive_lr.schedulers.base import PolicyConfigError

    try:
        return args.func(args)
    except (ConfigError, PolicyConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
