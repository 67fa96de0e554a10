"""The layers of ``streams`` and ``touchpoint_tools``, enforced on what each module really imports (docs/architecture.md).

The rule lives here and only here: ``LAYERS`` gives every module of the package a layer (first
matching pattern wins), ``ALLOWED`` says which layers a layer may import, ``IO_LIBRARIES`` are
the frameworks only adapters and wiring may load. Each module is imported in a fresh interpreter
and judged on the modules that import really loaded (``sys.modules``), so an import hidden
behind a package ``__init__`` or a re-export counts as well as one written in the file.

A new module without a layer fails ``test_every_module_has_a_layer``: decide where it belongs.
"""

from __future__ import annotations

import fnmatch
import json
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import streams
import touchpoint_tools

ROOT = Path(__file__).resolve().parents[1]

# (module pattern, layer); first match wins. Order: specific names before package wildcards.
LAYERS: list[tuple[str, str]] = [
    # adapters: talk to Kafka, Redis, HTTP or Prometheus on behalf of the core
    ("streams.identity.redis_graph", "adapter"),
    ("streams.identity.rebuild", "adapter"),
    ("streams.identity.data_keys", "adapter"),
    ("streams.demand.alerting", "adapter"),
    ("streams.demand.open_alerts", "adapter"),
    ("streams.profiles.sends", "adapter"),
    ("streams.activation.destinations", "adapter"),
    ("streams.activation.forwarder", "adapter"),
    ("streams.collector.publisher", "adapter"),
    ("streams.collector.ratelimit", "core"),
    ("streams.kafka.ordered", "core"),
    ("streams.kafka", "adapter"),
    ("streams.kafka.*", "adapter"),
    ("streams.observability", "adapter"),
    ("streams.observability.*", "adapter"),
    ("streams.resilience", "adapter"),
    # wiring: Faust agents, the app, HTTP servers and pages
    ("streams.app", "wiring"),
    ("streams.*.agent", "wiring"),
    ("streams.*.views", "wiring"),
    ("streams.web", "wiring"),
    ("streams.web.*", "wiring"),
    ("streams.collector", "wiring"),
    ("streams.collector.app", "wiring"),
    ("streams.collector.server", "wiring"),
    ("streams.activation.wiring", "wiring"),
    ("streams.activation.customers", "wiring"),
    # tooling (its own package, never loaded by the runtime): local stack, benchmarks, oracle;
    # the simulators are pure. The CLI fronts runtime and tooling alike.
    ("touchpoint_tools.simulate", "tooling_pure"),
    ("touchpoint_tools.simulate.*", "tooling_pure"),
    ("touchpoint_tools.bench.pipeline", "tooling"),
    ("touchpoint_tools.bench.pipeline.*", "tooling"),
    ("touchpoint_tools.bench.*", "cli"),  # the benchmark scripts are entry points, like the CLI
    ("touchpoint_tools", "tooling"),
    ("touchpoint_tools.*", "tooling"),
    ("streams.cli", "cli"),
    ("streams.cli.*", "cli"),
    # core: pure logic, typed values, settings; tested without services
    ("streams", "core"),
    ("streams.settings", "core"),
    ("streams.backoff", "core"),
    ("streams.unmetered", "core"),
    ("streams.events", "core"),
    ("streams.events.*", "core"),
    ("streams.demand", "core"),
    ("streams.demand.*", "core"),
    ("streams.identity", "core"),
    ("streams.identity.*", "core"),
    ("streams.ingest", "core"),
    ("streams.ingest.*", "core"),
    ("streams.profiles", "core"),
    ("streams.profiles.*", "core"),
    ("streams.activation", "core"),
    ("streams.activation.*", "core"),
]

# Which of the project's layers a layer may load.
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "adapter": {"core", "adapter"},
    "wiring": {"core", "adapter", "wiring"},
    "tooling_pure": {"core", "tooling_pure"},
    "tooling": {"core", "adapter", "wiring", "tooling_pure", "tooling"},
    "cli": {"core", "adapter", "wiring", "tooling_pure", "tooling", "cli"},
}

# Frameworks and clients that only adapters, wiring, tooling and the CLI may load.
IO_LIBRARIES = ("faust", "mode", "aiokafka", "kafka", "redis", "aiohttp", "prometheus_client", "uvloop")
IO_FREE_LAYERS = {"core", "tooling_pure"}


def layer_of(module: str, layers: list[tuple[str, str]] = LAYERS) -> str | None:
    for pattern, layer in layers:
        if fnmatch.fnmatchcase(module, pattern):
            return layer
    return None


PROJECT = ("streams", "touchpoint_tools")


def package_modules(package=streams) -> list[str]:
    names = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        names.append(info.name)
    return sorted(names)


_PROBE = (
    "import importlib, json, sys\n"
    "before = set(sys.modules)\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(json.dumps(sorted(set(sys.modules) - before)))\n"
)


def loaded_by(module: str, extra_path: Path | None = None) -> list[str]:
    """Every module that ``import module`` loads, in a fresh interpreter."""
    code = _PROBE if extra_path is None else f"import sys; sys.path.insert(0, {str(extra_path)!r})\n" + _PROBE
    proc = subprocess.run([sys.executable, "-c", code, module], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"importing {module} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def violations(module: str, loaded: list[str], layers: list[tuple[str, str]] = LAYERS, project: tuple[str, ...] = PROJECT) -> list[str]:
    """What ``module`` breaks of the rule, given what it loaded."""
    layer = layer_of(module, layers)
    if layer is None:
        return [f"{module}: no layer"]
    found = []
    if layer in IO_FREE_LAYERS:
        for lib in IO_LIBRARIES:
            if lib in loaded:
                found.append(f"{module} ({layer}) loads {lib}")
    for other in loaded:
        # a package's __init__ runs for every submodule: judged as a module of its own, not here
        if module.startswith(other + "."):
            continue
        if any(other == p or other.startswith(p + ".") for p in project):
            other_layer = layer_of(other, layers)
            if other_layer is not None and other_layer not in ALLOWED[layer]:
                found.append(f"{module} ({layer}) loads {other} ({other_layer})")
    return found


def all_modules() -> list[str]:
    return package_modules(streams) + package_modules(touchpoint_tools)


def test_every_module_has_a_layer() -> None:
    missing = [m for m in all_modules() if layer_of(m) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_layers_hold_on_what_each_module_loads() -> None:
    # the CLI may load anything; every other module is checked in its own interpreter
    modules = [m for m in all_modules() if layer_of(m) != "cli"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = dict(zip(modules, pool.map(loaded_by, modules), strict=True))
    broken = [v for m in modules for v in violations(m, loaded[m])]
    assert not broken, "layer violations:\n  " + "\n  ".join(broken)


def test_a_bad_import_is_caught(tmp_path: Path) -> None:
    """The check is not vacuous: a pure module that loads redis, or an adapter, is reported."""
    pkg = tmp_path / "fakeproj"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "adapter.py").write_text("import json\n")
    (pkg / "core" / "good.py").write_text("import json\n")
    (pkg / "core" / "io.py").write_text("import redis\n")
    (pkg / "core" / "reaches_out.py").write_text("from fakeproj import adapter\n")
    layers = [("fakeproj.adapter", "adapter"), ("fakeproj", "core"), ("fakeproj.core", "core"), ("fakeproj.core.*", "core")]

    def check(module: str) -> list[str]:
        return violations(module, loaded_by(module, extra_path=tmp_path), layers, project=("fakeproj",))

    assert check("fakeproj.core.good") == []
    assert check("fakeproj.core.io") == ["fakeproj.core.io (core) loads redis"]
    assert check("fakeproj.core.reaches_out") == ["fakeproj.core.reaches_out (core) loads fakeproj.adapter (adapter)"]
    assert layer_of("elsewhere.nowhere", layers) is None
    assert violations("elsewhere.mod", [], layers) == ["elsewhere.mod: no layer"]


@pytest.mark.parametrize("module, layer", [
    ("streams.demand.detector", "core"),
    ("streams.kafka.ordered", "core"),
    ("streams.kafka.ordering", "adapter"),
    ("streams.profiles.agent", "wiring"),
    ("touchpoint_tools.devstack.stack", "tooling"),
    ("touchpoint_tools.simulate.population", "tooling_pure"),
    ("touchpoint_tools.bench.pipeline.harness", "tooling"),
    ("touchpoint_tools.bench.nab_score", "cli"),
])
def test_layer_table_reads_as_documented(module: str, layer: str) -> None:
    assert layer_of(module) == layer
