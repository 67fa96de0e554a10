"""``touchpoint detect --csv FILE``: the demand-shift detector offline on one series."""

from __future__ import annotations

import argparse
import sys

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="run the demand-shift detector on a timestamp,value CSV; prints timestamp,value,alert")
    p.add_argument("--csv", required=True, help="a timestamp,value CSV (header allowed), or - for stdin")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.errors import UsageError
    from streams.demand.offline import detect_csv

    try:
        if args.csv == "-":
            detect_csv(sys.stdin, sys.stdout)
        else:
            with open(args.csv, encoding="utf-8") as handle:
                detect_csv(handle, sys.stdout)
    except FileNotFoundError:
        raise UsageError(f"{args.csv}: no such file") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0
