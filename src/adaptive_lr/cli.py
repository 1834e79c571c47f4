"""`adaptive-lr` command line. Heavy libraries (torch, Lightning, MLflow) are imported only inside commands, so
`adaptive-lr --help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from adaptive_lr.errors import UserError, one_line

if TYPE_CHECKING:
    from adaptive_lr.runner import RunResult


class UsageError(UserError):
    """The command line itself is wrong (an unknown command, a missing or malformed argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, its errors raised as a UsageError (one `error:` line, exit 2) instead of usage and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _cmd_train(args: argparse.Namespace) -> int:
    from adaptive_lr.config import compose
    from adaptive_lr.runner import run

    cfg = compose(args.overrides)  # a config error is reported before the heavy imports
    _import_libraries()
    return _finished(run(cfg, progress=True))  # a bar on a terminal, else a line an epoch


def _finished(result: RunResult) -> int:
    print(f"run {result.run_id} FINISHED in {result.seconds:.1f}s: " +
          ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items())))
    print(f"run folder: {result.run_dir}")
    return 0


def _import_libraries() -> None:
    """The first imports of Lightning and MLflow in this process, without the optional packages they would import
    with them (`compat.import_lightning`, `compat.import_mlflow`): a cold `train task=digits` took 9.1-9.9 s against
    12.9-13.4 s with ADAPTIVE_LR_FULL_IMPORTS=1 on this 2-core machine at load 4 (benchmarks/cold_start.md)."""
    from adaptive_lr.compat import import_lightning, import_mlflow

    import_lightning()
    import_mlflow()


def _cmd_resume(args: argparse.Namespace) -> int:
    from adaptive_lr.runner import resume_run

    _import_libraries()
    if Path(args.run).is_dir():  # a run folder knows its run and store
        from adaptive_lr.tracking.run import stored_identity

        run_id, uri = stored_identity(Path(args.run))
    else:
        run_id, uri = args.run, _tracking_uri(args.overrides)
    return _finished(resume_run(run_id, uri, progress=True))


def _tracking_uri(overrides: Sequence[str]) -> str:
    """The MLflow store the configuration (with these overrides) points at."""
    from adaptive_lr.config import compose
    from adaptive_lr.tracking.run import resolve_tracking_uri

    cfg = compose(overrides)
    return resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))


def _report(experiment: str, overrides: Sequence[str]) -> Path:
    from adaptive_lr.config import compose
    from adaptive_lr.reporting import write_report
    from adaptive_lr.tracking.run import resolve_tracking_uri

    cfg = compose(overrides)
    uri = resolve_tracking_uri(cfg.logger.tracking_uri, Path(cfg.paths.mlruns))
    from adaptive_lr.experiment import attach_report
    from adaptive_lr.tracking.run import mark_orphans

    mark_orphans(uri)  # a run whose process died is reported as KILLED, not as still running

    report = write_report(experiment, uri, Path(cfg.paths.reports), tau_max=cfg.report.tau_max,
                          alpha=cfg.report.alpha)  # nothing to report: a NoRunsError, a UserError
    attach_report(experiment, uri, report.parent)  # also in the MLflow UI, on the grid's parent run
    return report


def _cmd_experiment(args: argparse.Namespace) -> int:
    from adaptive_lr.experiment import ENGINES, run_grid

    engine = ENGINES[args.engine](args.jobs, **({"address": args.address} if args.address else {}))
    grid = run_grid(args.name, args.overrides, engine=engine)
    if args.report_changed:
        from adaptive_lr.config import compose
        from adaptive_lr.reporting import plots
        from adaptive_lr.reporting.bundle import latest_covers

        reports = Path(compose(args.overrides).paths.reports) / plots.slug(grid.name)
        if (latest := latest_covers(reports, _tracking_uri(args.overrides), grid.name)) is not None:
            print(f"report: up to date ({latest} holds every finished run)")
            return 0
    if args.report or args.report_changed:
        print(f"report: {_report(grid.name, args.overrides)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    if args.bundle_only:
        from adaptive_lr.config import compose
        from adaptive_lr.reporting.bundle import save_bundle

        cfg = compose(args.overrides)
        if args.unless_reported is not None:
            from adaptive_lr.reporting import plots
            from adaptive_lr.reporting.bundle import latest_covers

            reported = Path(args.unless_reported) / plots.slug(args.name or "")
            if (latest := latest_covers(reported, _tracking_uri(args.overrides), args.name or "")) is not None:
                print(f"bundle: not needed ({latest} holds every finished run)")
                return 0
        folder = save_bundle(args.name or "", _tracking_uri(args.overrides), Path(cfg.paths.reports))
        print(f"bundle: {folder}")
        return 0
    if args.bundle is None:
        if args.name is None:
            from adaptive_lr.config import ConfigError

            raise ConfigError("report needs an experiment name, or --from <bundle folder>")
        from adaptive_lr.experiment import load_grid

        print(f"report: {_report(load_grid(args.name).name, args.overrides)}")
        return 0
    from adaptive_lr.config import compose
    from adaptive_lr.reporting import write_report_from_bundle

    # with --from every positional is an override: the experiment comes from the bundle(s)
    cfg = compose([*([args.name] if args.name else []), *args.overrides])
    report = write_report_from_bundle([Path(b) for b in args.bundle], Path(cfg.paths.reports),
                                      tau_max=cfg.report.tau_max, alpha=cfg.report.alpha, name=args.title)
    print(f"report: {report}")
    return 0


def _cmd_rank_check(args: argparse.Namespace) -> int:
    from adaptive_lr.config import compose
    from adaptive_lr.reporting.rank_check import write_rank_check

    cfg = compose(args.overrides)
    print(f"rank check: {write_rank_check(Path(args.quick), Path(args.long), Path(cfg.paths.reports), args.title)}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from adaptive_lr.reporting.bundle import import_bundle

    uri = _tracking_uri(args.overrides)
    experiment, imported, skipped = import_bundle(Path(args.bundle), uri)
    print(f"{experiment}: imported {imported} finished run(s) from {args.bundle} ({skipped} already in the store); "
          f"`adaptive-lr experiment {experiment}` now runs only the cells they did not finish")
    return 0


def _running_folder(run: str, overrides: Sequence[str]) -> Path:
    """The folder of a run that is running now, given as its folder or its MLflow run ID (looked up in the
    configured store). A command for any other run would never be applied, so a run whose MLflow status is not
    RUNNING, or whose process (on this host) has ended, is refused."""
    import platform

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from adaptive_lr.config import ConfigError
    from adaptive_lr.tracking.run import process_alive, stored_identity

    run_id, uri = stored_identity(Path(run)) if Path(run).is_dir() else (run, _tracking_uri(overrides))
    try:
        record = MlflowClient(uri).get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"{run!r} is neither a run folder nor a run ID in {uri}") from err
    status, tags = record.info.status, record.data.tags
    if status != "RUNNING":
        raise ConfigError(f"run {run_id} is {status}, not RUNNING: LR commands apply only to a running run")
    pid = tags.get("pid", "")
    if tags.get("host") == platform.node() and pid.isdigit() and not process_alive(int(pid)):
        raise ConfigError(f"run {run_id} is marked RUNNING but its process {pid} has ended: LR commands "
                          "apply only to a running run")
    folder = tags.get("run_dir", "")
    if not folder or not Path(folder).is_dir():
        raise ConfigError(f"run {run_id} has no run folder on this machine ({folder or 'no run_dir tag'})")
    return Path(folder)


def _cmd_live(args: argparse.Namespace) -> int:
    from adaptive_lr.live_control import write_command

    folder = _running_folder(args.run, args.overrides)
    command = write_command(folder, args.op, getattr(args, "value", None))
    what = "released to its scheduler" if command.op == "release" else f"{command.op} {command.value:g}"
    print(f"{folder}: LR {what} (command {command.seq}, applied at the run's next step)")
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from adaptive_lr.watch.runs import resolve
    from adaptive_lr.watch.server import check_port, serve

    check_port(args.port)
    refs = [a for a in args.runs if "=" not in a]  # `key=value`: an override locating the store (for a run ID)
    overrides = [a for a in args.runs if "=" in a]
    if not 1 <= len(refs) <= 2:
        raise UsageError(f"watch takes one or two runs (side by side), got {len(refs)}")
    runs = [resolve(ref, lambda: _tracking_uri(overrides)) for ref in refs]
    serve(runs, host=args.host, port=args.port)
    return 0


def _cmd_meta_train(args: argparse.Namespace) -> int:
    from adaptive_lr.meta.transfer import leave_one_out, train_and_save

    if args.leave_one_out:
        print(f"report: {leave_one_out(args.overrides, jobs=args.jobs)}")
    else:
        print(f"policy: {train_and_save(args.overrides)} (evaluate it frozen: scheduler.policy.warm_start=<it> "
              "++scheduler.policy.online=false ++scheduler.policy.explore=false)")
    return 0


def _add_train(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("train", help="train one run: adaptive-lr train task=digits scheduler=cosine seed=1")
    p.add_argument("overrides", nargs="*", help="Hydra-style overrides of configs/train.yaml")
    p.set_defaults(func=_cmd_train)


def _add_experiment(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("experiment", help="run a grid from experiments/<name>.yaml (finished cells are skipped)")
    p.add_argument("name", help="experiment name (experiments/<name>.yaml) or a path to a grid file")
    p.add_argument("overrides", nargs="*", help="overrides applied to every cell")
    p.add_argument("--report", action="store_true", help="write the comparison report afterwards")
    p.add_argument("--report-changed", action="store_true",
                   help="write it only if the latest report's bundle does not already hold every finished run")
    p.add_argument("-j", "--jobs", type=int, default=1, help="cells run in parallel worker processes (default 1)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where cells run: local processes, or Ray tasks (needs `uv sync --group scale`)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    p.set_defaults(func=_cmd_experiment)


def _add_live_control(sub: argparse._SubParsersAction[_Parser]) -> None:
    """set-lr, scale-lr and release-lr: commands a running run reads from its folder."""
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


def _add_resume(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("resume", help="continue a KILLED or FAILED run in the same MLflow run, from its last "
                                      "checkpoint, with its stored config (identical to an uninterrupted run)")
    p.add_argument("run", help="run folder (runs/<experiment>/<run>) or MLflow run ID")
    p.add_argument("overrides", nargs="*", help="overrides locating the MLflow store (for a run ID)")
    p.set_defaults(func=_cmd_resume)


def _add_watch(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("watch", help="a live page of a run (or two side by side) with LR controls, on 127.0.0.1")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folder (runs/<experiment>/<run>) or MLflow run ID, a second one to compare; "
                        "key=value overrides locate the MLflow store (for a run ID)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    p.set_defaults(func=_cmd_watch)


def _add_report(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("report", help="write reports/<name>/<timestamp>/report.md from the logged runs or a bundle")
    p.add_argument("name", nargs="?", help="experiment name (not with --from)")
    p.add_argument("overrides", nargs="*", help="overrides (e.g. paths.root=... or logger.tracking_uri=...)")
    p.add_argument("--from", dest="bundle", metavar="BUNDLE", action="append", default=None,
                   help="rebuild from a report's per-run bundle folder (reports/<name>/<ts>/bundle), no store needed; "
                        "repeat to merge several (a study's parts) into one report")
    p.add_argument("--title", default=None, help="the experiment name of a report merged from several bundles")
    p.add_argument("--bundle-only", action="store_true",
                   help="write only the per-run bundle (also of a grid still in its sweep), to commit and import later")
    p.add_argument("--unless-reported", metavar="REPORTS", default=None,
                   help="with --bundle-only: skip when the latest report in REPORTS/<name>/ holds every finished run")
    p.set_defaults(func=_cmd_report)


def _add_rank_check(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("rank-check", help="does a quick budget rank methods like a longer one? compare two bundles")
    p.add_argument("quick", help="bundle of the quick budget (reports/<grid>/<ts>/bundle)")
    p.add_argument("long", help="bundle of the same design at a longer budget")
    p.add_argument("overrides", nargs="*", help="overrides (e.g. paths.reports=...)")
    p.add_argument("--title", default=None, help="report folder name (default <quick>-vs-<long>)")
    p.set_defaults(func=_cmd_rank_check)


def _add_import(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("import", help="recreate a bundle's finished runs in the store, so a grid continues from them")
    p.add_argument("bundle", help="a report's per-run bundle folder (reports/<name>/<timestamp>/bundle)")
    p.add_argument("overrides", nargs="*", help="overrides locating the MLflow store (paths.root=..., logger.tracking_uri=...)")
    p.set_defaults(func=_cmd_import)


def _add_meta_train(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("meta-train", help="train a learned controller across many short runs and save the frozen "
                                          "policy (configs/meta_train.yaml); --leave-one-out: per family, train "
                                          "without it and evaluate the frozen policy on it against learning from scratch")
    p.add_argument("overrides", nargs="*", help="overrides of configs/meta_train.yaml, e.g. meta/controller=rl_bandit "
                                                "meta/reward=val_auc episodes=24 holdout=digits")
    p.add_argument("--leave-one-out", action="store_true", help="one policy per held-out family, then the transfer "
                                                                 "grid and its report")
    p.add_argument("-j", "--jobs", type=int, default=1, help="transfer-grid cells run in parallel (default 1)")
    p.set_defaults(func=_cmd_meta_train)


# the subcommands in the order `adaptive-lr --help` lists them
_SUBCOMMANDS = (_add_train, _add_experiment, _add_live_control, _add_resume, _add_watch, _add_report,
                _add_rank_check, _add_import, _add_meta_train)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="adaptive-lr",
        description="Do learning-rate schedulers that react to training feedback beat fixed schedules?",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every user error (a `UserError`: config, data, grid, report or command-line input) is
    one `error:` line on stderr and exit code 2; anything else is a bug and keeps its traceback."""
    from adaptive_lr.runtime import configure_environment

    configure_environment()  # telemetry off, library caches in the project's cache, before any heavy import
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
    except UserError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    if argv is None and code == 0 and args.func in (_cmd_train, _cmd_resume):  # the command line, not a caller
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> NoReturn:
    """End the process once a run is closed (stored, flushed, marked FINISHED), without the interpreter's teardown of
    every module Lightning and MLflow imported: measured 3.4 s of a 14.6 s `import lightning, mlflow.tracking` then
    exit on this 2-core machine under load, 0.1 s this way (`benchmarks/cold_start.py`). The atexit handlers still
    run (logging, MLflow's, TensorBoard's); the process's own threads are idle by then (the MLflow writer flushed,
    TensorBoard's writers closed, the views' background work done at train end)."""
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
