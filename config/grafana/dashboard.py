"""The Grafana dashboard of ``python -m supervisor run``, built as code.

    python config/grafana/dashboard.py          # rewrites config/grafana/supervisor.json

Import ``supervisor.json`` into Grafana (Dashboards > New > Import) and pick the
Prometheus that scrapes ``/metrics``. ``tests/test_dashboards.py`` keeps the JSON in
sync with this file and checks every expression against a real scrape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.statetimeline import Panel as StateTimeline
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).with_name("supervisor.json")
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
T = 'target=~"$target"'


def query(expr: str, legend: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).datasource(DS)


def series(title: str, unit: str, *queries: Dataquery, description: str = "") -> Timeseries:
    panel = Timeseries().title(title).unit(unit).datasource(DS).height(8).span(12)
    if description:
        panel = panel.description(description)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def build() -> Dashboard:
    return (
        Dashboard("Redis supervisor")
        .uid("redis-supervisor")
        .tags(["redis", "supervisor"])
        .refresh("30s")
        .time("now-3h", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            QueryVariable("target")
            .label("Target")
            .datasource(DS)
            .query("label_values(supervisor_state, target)")
            .multi(True)
            .include_all(True)
        )
        .with_row(Row("Is it serving?"))
        .with_panel(
            StateTimeline()
            .title("State")
            .datasource(DS)
            .height(6)
            .span(24)
            .with_target(query(f"supervisor_state{{{T}}} == 1", "{{target}} {{state}}"))
        )
        .with_panel(
            Stat()
            .title("Outages ended, by cause (range)")
            .datasource(DS)
            .height(6)
            .span(12)
            .with_target(
                query(
                    f"sum by (cause) (increase(supervisor_outages_total{{{T}}}[$__range])) > 0",
                    "{{cause}}",
                )
            )
        )
        .with_panel(
            series(
                "Commands waiting",
                "short",
                query(f"supervisor_waiting_commands{{{T}}}", "{{target}}"),
                description="At the gate during an outage, or for a connection of a full pool",
            )
        )
        .with_row(Row("Why connections drop"))
        .with_panel(
            series(
                "Connections lost while serving, by cause",
                "short",
                query(
                    f"sum by (cause) (increase(supervisor_connection_losses_total{{{T}}}[5m]))",
                    "{{cause}}",
                ),
            )
        )
        .with_panel(
            series(
                "Failed connection attempts per second, by cause",
                "ops",
                query(
                    f"sum by (cause) (rate(supervisor_reconnect_attempts_total{{{T}}}[5m]))",
                    "{{cause}}",
                ),
            )
        )
        .with_panel(
            series(
                "Health-check round trip",
                "s",
                query(f"supervisor_health_check_latency_seconds{{{T}}}", "{{target}}"),
            )
        )
        .with_row(Row("The server"))
        .with_panel(
            series(
                "Clients and maxclients",
                "short",
                query(f"redis_connected_clients{{{T}}}", "{{target}} connected"),
                query(f"redis_config_maxclients{{{T}}}", "{{target}} maxclients"),
            )
        )
        .with_panel(
            series(
                "Connections refused and clients evicted per second",
                "ops",
                query(f"rate(redis_rejected_connections_total{{{T}}}[5m])", "{{target}} rejected"),
                query(f"rate(redis_evicted_clients_total{{{T}}}[5m])", "{{target}} evicted"),
            )
        )
    )


def render() -> str:
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(build().build())
    return json.dumps(json.loads(encoded), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
