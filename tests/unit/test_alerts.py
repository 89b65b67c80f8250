"""docker/prometheus, checked statically: Prometheus scrapes the compose services where they
listen and loads the rules compose mounts; every alert rule is well formed and names only
metrics the README documents (tests/integration/test_metrics.py checks that the services
export exactly those)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
CONFIG = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
RULES = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"]}
PROMETHEUS_OWN = {"up"}  # series Prometheus makes itself for every target


def documented_metrics() -> set[str]:
    """The metric names of the README's Operations table, as exposed (``_total`` and all)."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Operations", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(caterva_[a-z0-9_]+)` \|", section, re.MULTILINE))


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are no function, keyword or
    label (a label is followed by a matcher, a function by a parenthesis)."""
    no_labels = re.sub(r"\{[^}]*\}", "", expr)
    no_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", no_labels)
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_groupings)
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", no_ranges)
    return {n for n in names if n not in ("and", "or", "unless")}


def test_the_readme_documents_metrics() -> None:
    assert len(documented_metrics()) > 30


def test_prometheus_scrapes_the_compose_services_where_they_listen() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service = compose["services"]["prometheus"]
    assert service["profiles"] == ["metrics"]
    assert "./prometheus:/etc/prometheus:ro" in service["volumes"]
    assert "127.0.0.1:9090:9090" in service["ports"]
    assert CONFIG["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        job["job_name"]: target
        for job in CONFIG["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {
        "caterva-publisher": "publisher:8470",
        "caterva-subscriber": "subscriber:8471",
    }
    for job in CONFIG["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        name, port = targets[job["job_name"]].split(":")
        command = compose["services"][name]["command"]
        assert command[command.index("--http") + 1] == f"0.0.0.0:{port}"


def test_the_required_alerts_exist() -> None:
    for needed in (
        "CatervaSubscriberStale",
        "CatervaSourceOffline",
        "CatervaDigestFailures",
        "CatervaCacheFull",
    ):
        assert needed in ALERTS, needed


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_rule_is_well_formed_and_names_documented_metrics(name: str) -> None:
    rule = ALERTS[name]
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in ("info", "warning", "critical")
    assert rule["annotations"]["summary"]
    if "for" in rule:
        assert re.fullmatch(r"\d+[smh]", rule["for"])
    expr = rule["expr"]
    assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]")
    names = metric_names(expr)
    assert names, expr
    unknown = names - documented_metrics() - PROMETHEUS_OWN
    assert not unknown, f"{name} uses metrics nobody exports: {sorted(unknown)}"


def test_metric_names_reads_an_expression_as_prometheus_would() -> None:
    expr = (
        'max by (instance, root) (a_total{job=~"x"}) == 1 or rate(b_bytes[5m]) > 0 '
        "and on (instance) c / d > 0.9"
    )
    assert metric_names(expr) == {"a_total", "b_bytes", "c", "d"}
