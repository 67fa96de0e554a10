"""``touchpoint detect --csv FILE``: the demand-shift detector offline on one series."""

from __future__ import annotations

import argparse
import os
import sys

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="run the demand-shift detector on a timestamp,value CSV; "
        "prints timestamp,value,alert,event,direction,expected,lower,upper",
    )
    p.add_argument("--csv", required=True, help="a timestamp,value CSV (header allowed), or - for stdin")
    p.add_argument("--measure", default=None, help="value column of a multi-column CSV (named in its header)")
    p.add_argument("--live", default=None, metavar="MEASURE",
                   help="judge the rows as the live demand stage judges MEASURE (orders, units, revenue or "
                        "interest): its volume rule (TOUCHPOINT_DEMAND_MIN_EXCESS), the baseline frozen at OPEN, "
                        "NEW_NORMAL after three days, seasons in TOUCHPOINT_DEMAND_TIMEZONE; default: the "
                        "detector's own judgement, as NAB is scored")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError
    from streams.demand.offline import SeriesStats, detect_csv

    stats = SeriesStats()
    live = None
    if args.live is not None:
        from streams.demand.dimensions import MEASURES
        from streams.demand.stage_config import StageConfig

        if args.live not in MEASURES:
            raise UsageError(f"--live {args.live!r}: expected one of {', '.join(MEASURES)}")
        live = (StageConfig.from_settings(settings), args.live)
    try:
        if args.csv == "-":
            detect_csv(sys.stdin, sys.stdout, measure=args.measure, stats=stats, live=live)
        else:
            with open(args.csv, encoding="utf-8") as handle:
                detect_csv(handle, sys.stdout, measure=args.measure, stats=stats, live=live)
    except BrokenPipeError:
        # The reader went away (``touchpoint detect --csv FILE | head``): it asked for no more
        # rows, nothing failed, so end quietly with 0 (a script under ``set -o pipefail`` goes on).
        # stdout is pointed at devnull so the interpreter's final flush raises nothing either.
        _quiet_stdout()
        return 0
    except FileNotFoundError:
        raise UsageError(f"{args.csv}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{args.csv}: is a directory, not a CSV file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.csv}: not a UTF-8 text file") from None
    except OSError as exc:
        raise UsageError(f"{args.csv}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{args.csv}: {exc}") from None
    if stats.back_in_time:
        print(
            f"touchpoint detect: {stats.back_in_time} row(s) not later than the previous row skipped "
            f"(first at line {stats.first_back_line}); output with alert 0",
            file=sys.stderr,
        )
    return 0


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a captured stdout): nothing to flush
        pass
