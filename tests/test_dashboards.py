"""The shipped Grafana dashboard and Prometheus alert rules: the committed dashboard is what
its builder makes, every expression parses, and every metric they name is one a running
``python -m supervisor run`` exports (read from a real scrape, not from a list)."""

from __future__ import annotations

import importlib.util
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
import yaml

from tests.helpers.child import python_m
from tests.helpers.servers import RedisServer, free_port
from tests.test_service import BOUND, ROOT, _scrape, wait_http

GRAFANA = ROOT / "config" / "grafana"
RULES = ROOT / "config" / "prometheus" / "rules.yml"


def _builder() -> Any:
    spec = importlib.util.spec_from_file_location("dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboard_exprs() -> list[str]:
    board = json.loads((GRAFANA / "supervisor.json").read_text())
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", []) if "expr" in t]
    found += [v["query"] for v in board["templating"]["list"] if v.get("type") == "query"]
    return found


def _rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _metrics(node: Any) -> Iterator[str]:
    """Every metric name a PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    for child in ("lhs", "rhs", "expr", "param", "vector_selector"):
        if getattr(node, child, None) is not None:
            yield from _metrics(getattr(node, child))
    for arg in getattr(node, "args", None) or ():
        yield from _metrics(arg)


def _parse(expr: str) -> Any:
    """Grafana's variables as Prometheus would see them once Grafana filled them in."""
    if expr.startswith("label_values("):
        expr = expr.removeprefix("label_values(").partition(",")[0]
    return promql_parser.parse(expr.replace("$__range", "1h").replace("$target", ".*"))


def test_the_committed_dashboard_is_what_its_builder_makes() -> None:
    built = _builder().render()
    committed = (GRAFANA / "supervisor.json").read_text()
    assert committed == built, "run: python config/grafana/dashboard.py"


def test_every_expression_parses_and_the_rules_cover_the_on_call_cases() -> None:
    exprs = _dashboard_exprs() + _rule_exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        _parse(expr)  # raises on a PromQL error
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {
        "RedisNotServing",
        "RedisReconnectAttempts",
        "RedisOverloaded",
        "RedisNearMaxclients",
        "RedisOutputBufferEvictions",
    } <= alerts


def test_every_metric_they_name_is_exported_by_a_running_service(
    shared_server: RedisServer, tmp_path
) -> None:
    port = free_port()
    config = tmp_path / "service.toml"
    config.write_text(
        f"[http]\nport = {port}\n[monitor]\ninterval = 0.2\n[targets.main]\n"
        f'url = "{shared_server.url}"\n'
    )
    with python_m("run", "--config", str(config)) as child:
        wait_http(port, "/health", 200)
        deadline = time.monotonic() + BOUND
        while "redis_config_maxclients" not in (exported := set(_scrape(port))):
            assert time.monotonic() < deadline, "the monitor never sampled the server"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        child.finish(BOUND)
    named = {m for expr in _dashboard_exprs() + _rule_exprs() for m in _metrics(_parse(expr))}
    assert named, "no metric found in the expressions"
    assert named <= exported, f"not exported by `run`: {sorted(named - exported)}"


@pytest.mark.parametrize("expr", ["rate(redis_rejected_connections[5m])"])
def test_the_name_check_can_fail(expr: str) -> None:
    """The old gauge name (before ``_total``) is found by the walk and is no export."""
    assert set(_metrics(_parse(expr))) == {"redis_rejected_connections"}
