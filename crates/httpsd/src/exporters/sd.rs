//! `P/exporters`: the exporters as a Prometheus HTTP SD target list, one group per
//! exporter path (`a.py` and `a.prom` are one path), each targeting httpsd itself with
//! `__metrics_path__` set to the path's `P/metrics/<path>`, so one `http_sd_configs`
//! entry scrapes every hosted exporter.
//!
//! Parameters: the directory's optional `_params.json` (ignored as an exporter, like
//! every `_` name) maps an exporter path to a list of parameter sets,
//! `{"probe": [{"target": "a"}, {"target": "b"}]}`; each set is a group of its own
//! with a `__param_<name>` label per parameter (Prometheus sends them as the query
//! string, which reaches the exporter as for target generators) and an
//! `exporter_params` label (`target=a`) that keeps the groups' series apart.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::exporter_path;
use crate::catalog::Snapshot;
use crate::params::Params;
use crate::tree::encode_path;

/// The name of the parameters file.
pub const PARAMS_FILE: &str = "_params.json";

/// Parameter sets by exporter path.
pub type ParamSets = BTreeMap<String, Vec<Params>>;

/// Reads `DIR/_params.json` (none: no parameters); every problem is an error, since a
/// partial list would drop targets.
pub fn read_params(dir: &Path) -> Result<ParamSets, String> {
    let path = dir.join(PARAMS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ParamSets::new()),
        Err(e) => return Err(format!("cannot read {PARAMS_FILE}: {e}")),
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{PARAMS_FILE}: invalid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(format!(
            "{PARAMS_FILE}: expected an object of exporter path to a list of parameter objects"
        ));
    };
    let mut sets = ParamSets::new();
    for (exporter, list) in map {
        let Value::Array(list) = list else {
            return Err(format!(
                "{PARAMS_FILE}: {exporter:?}: expected a list of parameter objects"
            ));
        };
        let mut params = Vec::new();
        for item in list {
            let Value::Object(obj) = item else {
                return Err(format!(
                    "{PARAMS_FILE}: {exporter:?}: each parameter set must be an object"
                ));
            };
            let mut pairs = Vec::new();
            for (k, v) in obj {
                let Value::String(v) = v else {
                    return Err(format!(
                        "{PARAMS_FILE}: {exporter:?}: parameter {k:?} must be a string"
                    ));
                };
                if !exposition::names::is_valid_legacy_label_name(&k) {
                    return Err(format!(
                        "{PARAMS_FILE}: {exporter:?}: parameter name {k:?} cannot be a label name"
                    ));
                }
                pairs.push((k, v));
            }
            params.push(Params::from_pairs(pairs));
        }
        sets.insert(exporter, params);
    }
    Ok(sets)
}

/// The target list: one group per exporter path (per parameter set when it has some),
/// in path order, all targeting `target` (`host:port`).
pub fn target_list(snapshot: &Snapshot, prefix: &str, target: &str, sets: &ParamSets) -> Value {
    let mut paths: Vec<&str> = (snapshot.listing.generators.iter())
        .map(|g| exporter_path(&g.rel))
        .collect();
    paths.dedup();
    let mut groups = Vec::new();
    for path in paths {
        let group = |extra: Map<String, Value>| {
            let mut labels = Map::new();
            labels.insert(
                "__metrics_path__".into(),
                json!(format!("{prefix}/metrics/{}", encode_path(path))),
            );
            labels.insert("exporter".into(), json!(path));
            labels.extend(extra);
            json!({"targets": [target], "labels": labels})
        };
        match sets.get(path) {
            Some(list) if !list.is_empty() => {
                for params in list {
                    let mut extra = Map::new();
                    for (k, v) in params.pairs() {
                        extra.insert(format!("__param_{k}"), json!(v));
                    }
                    extra.insert("exporter_params".into(), json!(params.to_string()));
                    groups.push(group(extra));
                }
            }
            _ => groups.push(group(Map::new())),
        }
    }
    Value::Array(groups)
}
