"""``touchpoint forecast --csv FILE --horizon H``: the streaming forecaster offline on one series."""

from __future__ import annotations

import argparse
import os
import sys

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forecast", help="forecast a timestamp,value CSV; prints timestamp,forecast,lo80,hi80,lo95,hi95")
    p.add_argument("--csv", required=True, help="a timestamp,value CSV (header allowed), or - for stdin")
    p.add_argument("--horizon", required=True, help="steps to forecast after the last row (1 .. 7 days of the series' spacing)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError
    from streams.demand.forecast_offline import forecast_csv

    try:
        horizon = int(args.horizon)
    except ValueError:
        raise UsageError(f"--horizon must be a whole number, got {args.horizon!r}") from None
    if horizon < 1:
        raise UsageError(f"--horizon must be at least 1, got {horizon}")
    try:
        if args.csv == "-":
            forecast_csv(sys.stdin, horizon, sys.stdout)
        else:
            if os.path.isdir(args.csv):
                raise UsageError(f"{args.csv}: is a directory, not a CSV file")
            with open(args.csv, encoding="utf-8") as handle:
                forecast_csv(handle, horizon, sys.stdout)
    except FileNotFoundError:
        raise UsageError(f"{args.csv}: no such file") from None
    except PermissionError:
        raise UsageError(f"{args.csv}: permission denied") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.csv}: not a UTF-8 text file") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0
