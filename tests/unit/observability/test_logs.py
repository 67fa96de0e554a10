import logging

from streams.observability.logs import RepeatLimiter, limit_repeats


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def record(msg="Unable to update metadata from %r", name="aiokafka.cluster", level=logging.ERROR):
    return logging.LogRecord(name, level, __file__, 1, msg, ("node",), None)


def test_a_flood_becomes_one_line_per_interval_with_a_count():
    clock = Clock()
    limiter = RepeatLimiter(10.0, clock)
    passed = []
    for i in range(1000):
        clock.t = i * 0.01  # 1000 retries in 10 s
        r = record()
        if limiter.filter(r):
            passed.append(r)
    clock.t = 10.5
    r = record()
    assert limiter.filter(r)
    assert len(passed) == 1 and "999 similar messages suppressed" in r.getMessage()


def test_different_messages_are_independent():
    limiter = RepeatLimiter(10.0, Clock())
    assert limiter.filter(record("a"))
    assert limiter.filter(record("b"))
    assert limiter.filter(record("a", level=logging.WARNING))
    assert not limiter.filter(record("a"))


def test_attached_to_the_aiokafka_loggers():
    import aiokafka.cluster  # noqa: F401 - creates the logger

    limiter = limit_repeats(interval_s=10.0)
    assert limiter in logging.getLogger("aiokafka.cluster").filters
    for name in ("aiokafka", "aiokafka.cluster"):
        logging.getLogger(name).removeFilter(limiter)
