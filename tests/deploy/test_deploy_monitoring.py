"""deploy/prometheus and deploy/grafana: valid PromQL over the metrics a worker really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from inspector.canary.metrics import CanaryMetrics
from inspector.worker.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "inspector-workers.json"
HERE = Path(__file__).resolve().parent
# What Grafana puts in place of its variables before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*", "$site": ".*"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (.ci/run installs it)"
)


def promtool(*args: str | Path, cwd: Path = HERE) -> subprocess.CompletedProcess[str]:
    """Run promtool; the test reads its output on failure."""
    return subprocess.run(
        ["promtool", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def exported_names() -> set[str]:
    """Every series name a worker's /metrics can carry."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    family: Metric
    names = set()
    families = [*WorkerMetrics().registry.collect(), *CanaryMetrics().registry.collect()]
    for family in families:
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[str]:
    """Each panel query as Prometheus receives it."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"panel {panel['title']!r} uses an unknown variable: {expr}"
            queries.append(expr)
    return queries


def alert_queries() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@needs_promtool
def test_alert_rules_fire_on_the_trouble_they_name_and_not_on_a_healthy_line() -> None:
    done = promtool(
        "test", "rules", "alerts_test.yml", "alerts_daily_test.yml", "alerts_canary_test.yml"
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_prometheus_config_and_its_rule_file_are_valid() -> None:
    done = promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    records = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": records}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(queries)} rules found" in done.stdout


def test_dashboard_and_alerts_name_only_metrics_the_worker_exports() -> None:
    exported = exported_names()
    used = {
        name
        for query in dashboard_queries() + alert_queries()
        for name in re.findall(r"\binspector_[a-z_]+\b", query)
    }
    assert used and used <= exported, f"not exported by a worker: {sorted(used - exported)}"
    # The panels cover the REVIEW share, rejections, the queue and latency at least.
    for name in (
        "inspector_verdicts_total",
        "inspector_rejections_total",
        "inspector_queue_depth",
        "inspector_end_to_end_seconds_bucket",
    ):
        assert name in used


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "instance", "site"} <= variables
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
