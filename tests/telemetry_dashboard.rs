//! The Grafana dashboard shipped with the Helm chart reads only metrics spbridge exposes
//! (histograms through `_bucket`), shows every one of them somewhere, and is well-formed
//! dashboard JSON (unique panel ids, a Prometheus data-source variable).

use serde_json::Value;
use spbridge::telemetry::metrics;
use std::collections::HashSet;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/helm/spbridge/dashboards/spbridge-overview.json"
);

fn expressions(panel: &Value, out: &mut Vec<String>) {
    for t in panel["targets"].as_array().into_iter().flatten() {
        if let Some(e) = t["expr"].as_str() {
            out.push(e.to_string());
        }
    }
    for p in panel["panels"].as_array().into_iter().flatten() {
        expressions(p, out);
    }
}

#[test]
fn dashboard_uses_the_exposed_metrics() {
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboard file");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert_eq!(dashboard["uid"], "spbridge-overview");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: Vec<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len(), "every panel has an id");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "unique ids"
    );
    assert!(dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));

    let mut exprs = Vec::new();
    for p in panels {
        expressions(p, &mut exprs);
    }
    let name = regex::Regex::new(r"spbridge_[a-z_]+").unwrap();
    let mut used = HashSet::new();
    for expr in &exprs {
        for m in name.find_iter(expr) {
            let n = m.as_str();
            let base = metrics::HISTOGRAMS
                .iter()
                .find(|h| {
                    n == format!("{h}_bucket")
                        || n == format!("{h}_count")
                        || n == format!("{h}_sum")
                })
                .copied()
                .unwrap_or(n);
            assert!(
                metrics::ALL.contains(&base),
                "dashboard reads {n}, which spbridge does not expose: {expr}"
            );
            used.insert(base.to_string());
        }
    }
    for m in metrics::ALL {
        assert!(used.contains(*m), "no panel shows {m}");
    }
}
