import orjson

from streams.events.model import Touchpoint
from streams.ingest.decode import decode
from streams.ingest.normalize import Normalizer
from streams.ingest.pii import PiiHasher
from streams.simulate.population import Population, crisis

START = 1_767_225_600_000


def test_same_seed_same_traffic():
    a = [orjson.dumps(e) for e in Population(50, seed=3).events(300, START, 1000)]
    b = [orjson.dumps(e) for e in Population(50, seed=3).events(300, START, 1000)]
    assert a == b and len(a) == 300


def test_every_simulated_event_is_valid_and_spans_channels():
    norm = Normalizer(PiiHasher("k"))
    channels = set()
    for event in Population(100, seed=1).events(2000, START, 500, crisis(START)):
        decoded = decode(orjson.dumps(event), 32768)
        assert isinstance(decoded, dict), decoded
        tp = norm.normalize(decoded, START)
        assert isinstance(tp, Touchpoint), tp
        channels.add(tp.channel)
    assert channels == {"web", "app", "miniprogram", "ecommerce", "pos", "crm", "service"}


def test_crisis_scenario_multiplies_masks_in_hubei():
    hour = 3_600_000
    pop = Population(400, seed=5)
    scenario = crisis(START)
    assert scenario.factor("masks", "hubei", START + 7 * hour) == 5.0
    assert scenario.factor("masks", "beijing", START + 7 * hour) == 1.0
    assert scenario.factor("travel", "beijing", START + 11 * hour) == 0.3
    events = list(pop.events(6000, START, 60_000, scenario))
    def share(lo, hi):
        sel = [e for e in events if lo <= Population_ts(e) < hi]
        masks = sum(1 for e in sel if (e.get("properties") or {}).get("category") == "masks" and e["context"]["location"]["region"] == "hubei")
        return masks / max(1, len(sel))
    assert share(START + 7 * hour, START + 30 * hour) > 2 * share(START, START + 6 * hour)


def Population_ts(event):
    from datetime import datetime
    return int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1000)
