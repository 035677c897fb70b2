//! The observability pack (`deploy/prometheus`, `deploy/grafana`) against
//! real nodes: promtool checks the rules and runs their unit tests, and
//! every metric the rules and the dashboard name is one that running nodes
//! export (an embedded node for the store and push families, a cluster-mode
//! node for the fleet's).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use super::fleet::{Fleet, Kind};
use super::{Cluster, Mode};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `promtool`, installed from Debian's `prometheus` package if missing.
fn promtool() -> &'static str {
    routing_registry::testing::ensure_debian_package("promtool", "prometheus");
    "promtool"
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let rules = deploy().join("prometheus");
    let check = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(rules.join("gateway-rules.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new(promtool())
        .current_dir(&rules)
        .args(["test", "rules", "gateway-rules.test.yml"])
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// The node's metric names in `text` (Prometheus rules or PromQL): words
/// that start like the node's families, outside double quotes (label values,
/// and the rules' annotations); recording rules' names (with `:`) are not
/// metrics.
fn named_metrics(text: &str) -> BTreeSet<String> {
    let unquoted: String = text.split('"').step_by(2).collect::<Vec<_>>().join(" ");
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| ["gateway_", "store_", "push_"].iter().any(|prefix| word.starts_with(prefix)))
        .filter(|word| !word.contains(':'))
        .map(str::to_owned)
        .collect()
}

/// Every series name `/metrics` shows: the families it declares (`# TYPE`;
/// one may have no sample yet, as the fleet's per-peer links before any
/// peer), and every sample's name (a histogram's `_bucket`, `_sum` and
/// `_count`).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(declared) => declared.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/gateway-rules.yml")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/gateway-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 30, "the dashboard's queries: {}", exprs.len());
    let mut wanted = named_metrics(&rules);
    for expr in &exprs {
        wanted.extend(named_metrics(expr));
    }
    let embedded = Cluster::start(Mode::Embedded, "");
    let fleet = Fleet::start(Kind::Single, 1);
    let mut have = BTreeSet::new();
    for gateway in [&embedded.gateway, fleet.node(0)] {
        let (status, scrape) = gateway.http_get("/metrics").unwrap();
        assert_eq!(status, 200);
        have.extend(exported(&scrape));
    }
    let missing: Vec<&String> = wanted.difference(&have).collect();
    assert!(missing.is_empty(), "named in deploy/ but not exported: {missing:?}");
    assert!(wanted.len() > 35, "the pack names {} metrics", wanted.len());
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("expr", Some(expr)) => out.push(expr.to_owned()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, out)),
        _ => {}
    }
}
