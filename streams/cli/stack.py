"""``touchpoint stack up|down|status``: the embedded default Kafka broker and Redis on loopback."""

from __future__ import annotations

import argparse
import sys

import orjson

from streams.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stack", help="start, stop or inspect the embedded Kafka broker and Redis")
    ssub = p.add_subparsers(dest="stack_command", required=True, metavar="SUBCOMMAND")
    up = ssub.add_parser("up", help="start Kafka and Redis if not running; returns once both answer")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for both to answer")
    up.set_defaults(run=run_up)
    ssub.add_parser("down", help="stop the processes `stack up` started").set_defaults(run=run_down)
    st = ssub.add_parser("status", help="say what runs where")
    st.add_argument("--json", action="store_true")
    st.set_defaults(run=run_status)


def stack_config(settings: Settings):  # type: ignore[no-untyped-def]
    from touchpoint_tools.devstack.stack import StackConfig

    return StackConfig.from_settings(settings)


def _print_status(status, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        print(orjson.dumps(status.as_dict()).decode())
        return
    for svc in (status.kafka, status.redis):
        state = "answering" if svc.answering else ("running, not answering" if svc.running else "stopped")
        print(f"{svc.name:6s} {state:24s} {svc.address:22s} pid={svc.pid or '-'}  {svc.version}")
        print(f"{'':6s} data {svc.data_dir}  log {svc.log_file}")


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    from touchpoint_tools.devstack.stack import StackError, up

    try:
        status = up(stack_config(settings), timeout_s=args.timeout)
    except StackError as exc:
        print(f"touchpoint stack up: {exc}", file=sys.stderr)
        return 1
    _print_status(status, False)
    if status.started:
        print(f"started: {', '.join(status.started)}")
    else:
        print("already running")
    return 0


def run_down(args: argparse.Namespace, settings: Settings) -> int:
    from touchpoint_tools.devstack.stack import down

    down(stack_config(settings))
    print("stopped")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from touchpoint_tools.devstack.stack import status

    st = status(stack_config(settings))
    _print_status(st, args.json)
    return 0 if st.ready else 3
