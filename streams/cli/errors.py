"""Errors every command may raise, and the one-line messages for errors from outside.

Bad input and an environment that is not there (Kafka or Redis unreachable, a missing file, a
busy port) are not bugs: the user gets one line saying what is wrong and exit code 2, never a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from numbers import Real
from typing import Any

__all__ = ["UsageError", "environment_error", "option_error"]


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


# Options that are counts, rates, durations or fractions, in any command: never negative.
NON_NEGATIVE = ("events", "people", "rate", "timeout", "settle", "max", "limit", "duplicates", "malformed",
                "spacing_ms", "latency_rate", "latency_seconds", "horizon", "concurrency", "seconds", "workers")
PORTS = ("port", "web_port")


def option_error(args: argparse.Namespace) -> str | None:
    """What is wrong with a parsed command line's numeric options, or None.

    >>> option_error(argparse.Namespace(rate=-1.0)), option_error(argparse.Namespace(web_port=0))
    ('--rate -1: must not be negative', '--web-port 0: a port is between 1 and 65535')
    >>> option_error(argparse.Namespace(rate=0.0, timeout=None, port=8088))
    """
    values = vars(args)
    for name in NON_NEGATIVE:
        value = values.get(name)
        if isinstance(value, Real) and not isinstance(value, bool) and (value < 0 or value != value):
            return f"--{name.replace('_', '-')} {value:g}: must not be negative"
    for name in PORTS:
        value = values.get(name)
        if isinstance(value, int) and not 1 <= value <= 65535:
            return f"--{name.replace('_', '-')} {value}: a port is between 1 and 65535"
    return None


def _types(module: str, *names: str) -> tuple[type, ...]:
    # only modules already imported can have raised: no import cost for commands that never load them
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, n) for n in names if loaded is not None and hasattr(loaded, n))


def _text(exc: BaseException) -> str:
    """``Type: message`` on one line, without the type twice (aiokafka's messages start with it)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def environment_error(exc: BaseException, settings: Any) -> str | None:
    """One line for an error caused by the environment, None for anything else (a bug)."""
    from streams.settings import mask_url

    kafka = _types("aiokafka.errors", "KafkaError")
    redis = _types("redis.exceptions", "RedisError")
    if kafka and isinstance(exc, kafka):
        return f"Kafka at {settings.kafka_bootstrap}: {_text(exc)}"[:400]
    if redis and isinstance(exc, redis):
        return f"Redis at {mask_url(settings.redis_url)}: {_text(exc)}"[:400]
    if isinstance(exc, TimeoutError):
        return f"timed out waiting for Kafka at {settings.kafka_bootstrap} or Redis ({type(exc).__name__})"
    if isinstance(exc, OSError):
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror or exc}"
        return f"{exc.strerror or exc}"
    return None
