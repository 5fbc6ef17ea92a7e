//! What Prometheus accepts from an HTTP SD endpoint: the one source of truth used by
//! `serve` (to refuse output Prometheus would reject) and by `check` (stricter, with
//! warnings). See `docs/migration.md` for how this differs from the original.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::pyjson;

/// How serious a problem is: errors fail the generator, warnings are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The output would be rejected (serve answers 500, check fails).
    Error,
    /// Accepted by Prometheus but probably not what the author meant.
    Warning,
}

/// The rule a problem breaks; stable names for machines (`check --format json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The result is `null`/`None`.
    NullResult,
    /// The result is not a JSON array.
    NotAList,
    /// An element of the array is not an object.
    GroupNotObject,
    /// A group has a key other than `targets` and `labels`.
    UnknownKey,
    /// A group has no `targets` key.
    TargetsMissing,
    /// `targets` is not a list.
    TargetsNotList,
    /// An element of `targets` is not a string.
    TargetNotString,
    /// A target is not `host:port` (check only).
    TargetFormat,
    /// `labels` is neither absent, null nor an object.
    LabelsNotMap,
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    LabelName,
    /// A label value is not a string.
    LabelValue,
    /// The same target appears twice (warning).
    DuplicateTarget,
    /// A label that Prometheus ignores or overwrites (warning).
    ReservedLabel,
    /// The generator produced no targets (warning).
    EmptyResult,
}

/// One finding about a generator's output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Index of the target group, when the problem is inside one.
    pub group: Option<usize>,
    /// The rule broken.
    pub rule: Rule,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group {
            Some(i) => write!(f, "group {i}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Which rules apply: `serve` enforces what Prometheus enforces, `check` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Validate each target as `host:port`.
    pub target_format: bool,
    /// With `target_format`, accept a target without a port.
    pub allow_missing_port: bool,
    /// Report warnings (duplicates, reserved labels, empty results).
    pub warnings: bool,
}

impl Profile {
    /// Exactly what Prometheus's HTTP SD decoder rejects.
    pub const SERVE: Profile = Profile {
        target_format: false,
        allow_missing_port: true,
        warnings: false,
    };

    /// The `check` command's rules.
    pub fn check(allow_missing_port: bool) -> Profile {
        Profile {
            target_format: true,
            allow_missing_port,
            warnings: true,
        }
    }
}

/// The result of validating one generator's output.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every problem found, errors and warnings, in group order.
    pub problems: Vec<Problem>,
    /// Number of groups in the output (when it is a list).
    pub group_count: usize,
    /// Number of target strings over all groups.
    pub target_count: usize,
}

impl Report {
    /// True when no problem is an error.
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// A one-line summary of the errors, at most a few of them, for HTTP bodies and logs.
    pub fn error_summary(&self) -> String {
        const SHOWN: usize = 5;
        let errors: Vec<String> = self.errors().map(ToString::to_string).collect();
        let mut s = errors
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if errors.len() > SHOWN {
            s.push_str(&format!("; and {} more", errors.len() - SHOWN));
        }
        s
    }
}

/// A generator's validated output, serialised once and shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorOutput {
    /// The groups as JSON, comma-separated, without the surrounding brackets.
    pub groups_json: Vec<u8>,
    /// Number of groups.
    pub group_count: usize,
    /// Number of targets over all groups.
    pub target_count: usize,
}

/// Why a generator's output was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid output: {summary}")]
pub struct InvalidOutput {
    /// Summary of the errors.
    pub summary: String,
    /// All problems (errors and warnings).
    pub problems: Vec<Problem>,
}

/// Validates `value` under `profile`, returning every problem found.
pub fn validate(value: &Value, profile: &Profile) -> Report {
    let mut report = Report::default();
    let groups = match value {
        Value::Array(groups) => groups,
        Value::Null => {
            report.push(Severity::Error, None, Rule::NullResult, "the result is null (None); raise an exception instead of returning None, or return [] for no targets".into());
            return report;
        }
        other => {
            report.push(
                Severity::Error,
                None,
                Rule::NotAList,
                format!(
                    "the result must be a list of target groups, got {}",
                    describe(other)
                ),
            );
            return report;
        }
    };
    report.group_count = groups.len();
    let mut seen_targets: HashSet<&str> = HashSet::new();
    for (i, group) in groups.iter().enumerate() {
        validate_group(i, group, profile, &mut report, &mut seen_targets);
    }
    if profile.warnings && report.is_ok() && report.target_count == 0 {
        report.push(
            Severity::Warning,
            None,
            Rule::EmptyResult,
            "the generator produced no targets; Prometheus will drop every target of this job"
                .into(),
        );
    }
    report
}

/// Validates under `profile` and, when valid, serialises the output once.
pub fn into_output(
    value: &Value,
    profile: &Profile,
) -> Result<Arc<GeneratorOutput>, InvalidOutput> {
    let report = validate(value, profile);
    if !report.is_ok() {
        return Err(InvalidOutput {
            summary: report.error_summary(),
            problems: report.problems,
        });
    }
    let mut groups_json = Vec::with_capacity(64 * report.group_count.max(1));
    if let Value::Array(groups) = value {
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                groups_json.push(b',');
            }
            pyjson::write_value(&mut groups_json, g);
        }
    }
    Ok(Arc::new(GeneratorOutput {
        groups_json,
        group_count: report.group_count,
        target_count: report.target_count,
    }))
}

impl Report {
    fn push(&mut self, severity: Severity, group: Option<usize>, rule: Rule, message: String) {
        self.problems.push(Problem {
            severity,
            group,
            rule,
            message,
        });
    }
}

fn validate_group<'a>(
    i: usize,
    group: &'a Value,
    profile: &Profile,
    report: &mut Report,
    seen: &mut HashSet<&'a str>,
) {
    let Value::Object(map) = group else {
        report.push(
            Severity::Error,
            Some(i),
            Rule::GroupNotObject,
            format!("a target group must be an object, got {}", describe(group)),
        );
        return;
    };
    for key in map.keys() {
        if key != "targets" && key != "labels" {
            report.push(
                Severity::Error,
                Some(i),
                Rule::UnknownKey,
                format!("unknown key {key:?}: a group may only have \"targets\" and \"labels\""),
            );
        }
    }
    match map.get("targets") {
        None => report.push(
            Severity::Error,
            Some(i),
            Rule::TargetsMissing,
            "missing \"targets\"".into(),
        ),
        Some(Value::Array(targets)) => {
            for (j, t) in targets.iter().enumerate() {
                match t {
                    Value::String(s) => {
                        report.target_count += 1;
                        if profile.target_format
                            && let Err(why) = check_host_port(s, profile.allow_missing_port)
                        {
                            report.push(
                                Severity::Error,
                                Some(i),
                                Rule::TargetFormat,
                                format!("target {s:?} {why}"),
                            );
                        }
                        if profile.warnings && !seen.insert(s.as_str()) {
                            report.push(
                                Severity::Warning,
                                Some(i),
                                Rule::DuplicateTarget,
                                format!("duplicate target {s:?}"),
                            );
                        }
                    }
                    other => report.push(
                        Severity::Error,
                        Some(i),
                        Rule::TargetNotString,
                        format!("target {j} must be a string, got {}", describe(other)),
                    ),
                }
            }
        }
        Some(other) => report.push(
            Severity::Error,
            Some(i),
            Rule::TargetsNotList,
            format!(
                "\"targets\" must be a list of strings, got {}",
                describe(other)
            ),
        ),
    }
    match map.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (name, value) in labels {
                if !is_valid_label_name(name) {
                    report.push(
                        Severity::Error,
                        Some(i),
                        Rule::LabelName,
                        format!(
                            "label name {name:?} is not valid (must match [a-zA-Z_][a-zA-Z0-9_]*)"
                        ),
                    );
                }
                if !value.is_string() {
                    report.push(
                        Severity::Error,
                        Some(i),
                        Rule::LabelValue,
                        format!(
                            "label {name:?} must have a string value, got {}",
                            describe(value)
                        ),
                    );
                }
                if profile.warnings && (name == "__address__" || name == "__meta_url") {
                    report.push(
                        Severity::Warning,
                        Some(i),
                        Rule::ReservedLabel,
                        format!("label {name:?} is set by Prometheus and will be overwritten"),
                    );
                }
            }
        }
        Some(other) => report.push(
            Severity::Error,
            Some(i),
            Rule::LabelsNotMap,
            format!(
                "\"labels\" must be a map of strings, got {}",
                describe(other)
            ),
        ),
    }
}

/// The target strings of one output with their group indexes, kept compactly (one
/// string and one index per target) for the checks across generators: a whole tree of
/// every generator's output would cost many times more (issue 19).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetList {
    text: String,
    /// (group index, end of the target in `text`), in order.
    ends: Vec<(usize, usize)>,
}

impl TargetList {
    /// The string targets of `value` (a list of groups), in order.
    pub fn of(value: &Value) -> TargetList {
        let mut list = TargetList::default();
        for (i, group) in value.as_array().into_iter().flatten().enumerate() {
            let targets = group.get("targets").and_then(Value::as_array);
            for t in targets.into_iter().flatten().filter_map(Value::as_str) {
                list.text.push_str(t);
                list.ends.push((i, list.text.len()));
            }
        }
        list.text.shrink_to_fit();
        list.ends.shrink_to_fit();
        list
    }

    /// `(group index, target)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, end)| end));
        self.ends
            .iter()
            .zip(starts)
            .map(|(&(group, end), start)| (group, &self.text[start..end]))
    }
}

/// Duplicate-target warnings across outputs that are served together (`(name, targets)`
/// pairs in path order): each target already produced by an earlier output is reported,
/// once per output, as `(index of the later output, warning)`.
pub fn duplicates_across(outputs: &[(&str, &TargetList)]) -> Vec<(usize, Problem)> {
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut found = Vec::new();
    for (k, (_, targets)) in outputs.iter().enumerate() {
        let mut own: HashSet<&str> = HashSet::new();
        for (i, t) in targets.iter() {
            if !own.insert(t) {
                continue; // a duplicate inside one output is reported by `validate`
            }
            match first.get(t) {
                Some(&j) if j != k => found.push((
                    k,
                    Problem {
                        severity: Severity::Warning,
                        group: Some(i),
                        rule: Rule::DuplicateTarget,
                        message: format!(
                            "duplicate target {t:?}: also produced by {}, which is served in the same path",
                            outputs[j].0
                        ),
                    },
                )),
                Some(_) => {}
                None => {
                    first.insert(t, k);
                }
            }
        }
    }
    found
}

/// True for a Prometheus 2.x (legacy) label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks `host:port` with a hostname, IPv4 or bracketed IPv6 host and a port 1-65535.
pub fn check_host_port(target: &str, allow_missing_port: bool) -> Result<(), String> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err("has an unclosed '[' (IPv6 hosts are written [addr]:port)".into());
        };
        let addr = &rest[..end];
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("has an invalid IPv6 address {addr:?}"));
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return Err("has unexpected characters after ']'".into()),
        }
    } else {
        if target.contains("://") {
            return Err("must not contain a scheme (use the __scheme__ label)".into());
        }
        match target.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(target), None),
        }
    };
    if let Some(h) = host {
        if h.contains(':') {
            return Err("looks like an IPv6 address without brackets".into());
        }
        if !is_valid_hostname(h) {
            return Err(format!("has an invalid host {h:?}"));
        }
    }
    match port {
        None if allow_missing_port => Ok(()),
        None => Err("is missing a port (host:port); use --allow-missing-port if you rely on the scheme's default port".into()),
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && !p.starts_with('+') => Ok(()),
            _ => Err(format!("has an invalid port {p:?} (must be 1-65535)")),
        },
    }
}

fn is_valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Names the JSON type of `v` for error messages, with a short excerpt.
pub fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    let mut excerpt = v.to_string();
    if excerpt.len() > 60 {
        let cut = (0..=60)
            .rev()
            .find(|&i| excerpt.is_char_boundary(i))
            .unwrap_or(0);
        excerpt.truncate(cut);
        excerpt.push('…');
    }
    format!("{kind} ({excerpt})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Value, p: Profile) -> Vec<Rule> {
        validate(&v, &p).errors().map(|p| p.rule).collect()
    }

    #[test]
    fn serve_profile_matches_prometheus() {
        let ok = json!([{"targets": ["a:1", "b"], "labels": {"job": "x"}}, {"targets": []}, {"targets": ["c:2"], "labels": null}]);
        assert!(validate(&ok, &Profile::SERVE).is_ok());
        assert_eq!(errors(json!(null), Profile::SERVE), [Rule::NullResult]);
        assert_eq!(
            errors(json!({"targets": []}), Profile::SERVE),
            [Rule::NotAList]
        );
        assert_eq!(
            errors(json!(["a:1"]), Profile::SERVE),
            [Rule::GroupNotObject]
        );
        assert_eq!(
            errors(json!([{"targets": [1]}]), Profile::SERVE),
            [Rule::TargetNotString]
        );
        assert_eq!(
            errors(json!([{"targets": "a:1"}]), Profile::SERVE),
            [Rule::TargetsNotList]
        );
        assert_eq!(
            errors(json!([{"labels": {}}]), Profile::SERVE),
            [Rule::TargetsMissing]
        );
        assert_eq!(
            errors(json!([{"targets": [], "x": 1}]), Profile::SERVE),
            [Rule::UnknownKey]
        );
        assert_eq!(
            errors(
                json!([{"targets": [], "labels": {"bad-name": "v"}}]),
                Profile::SERVE
            ),
            [Rule::LabelName]
        );
        assert_eq!(
            errors(
                json!([{"targets": [], "labels": {"a": false}}]),
                Profile::SERVE
            ),
            [Rule::LabelValue]
        );
        assert_eq!(
            errors(json!([{"targets": [], "labels": ["a"]}]), Profile::SERVE),
            [Rule::LabelsNotMap]
        );
    }

    #[test]
    fn host_port_rules() {
        for ok in [
            "a:1",
            "10.0.0.1:65535",
            "[::1]:9100",
            "host-1.example_x.com:80",
        ] {
            assert_eq!(check_host_port(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "a",
            "a:0",
            "a:65536",
            "a:x",
            "::1:80",
            "[::1]",
            "http://a:1",
            "-a:1",
            ":80",
            "a..b:1",
        ] {
            assert!(check_host_port(bad, false).is_err(), "{bad}");
        }
        assert_eq!(check_host_port("a", true), Ok(()));
        assert_eq!(check_host_port("[::1]", true), Ok(()));
    }

    #[test]
    fn duplicates_across_outputs_warn_on_the_later_one() {
        let a = json!([{"targets": ["x:1", "y:1"]}]);
        let b = json!([{"targets": ["z:1"]}, {"targets": ["y:1", "y:1", "x:1"]}]);
        let c = json!([{"targets": ["z:1"]}]);
        let (a, b, c) = (TargetList::of(&a), TargetList::of(&b), TargetList::of(&c));
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [(0, "z:1"), (1, "y:1"), (1, "y:1"), (1, "x:1")]
        );
        let found = duplicates_across(&[("a", &a), ("b", &b), ("c", &c)]);
        let got: Vec<(usize, Option<usize>, Severity)> = found
            .iter()
            .map(|(k, p)| (*k, p.group, p.severity))
            .collect();
        // b repeats y:1 (once, despite its own duplicate) and x:1; c repeats b's z:1.
        assert_eq!(
            got,
            [
                (1, Some(1), Severity::Warning),
                (1, Some(1), Severity::Warning),
                (2, Some(0), Severity::Warning)
            ]
        );
        assert!(found[0].1.message.contains("\"y:1\"") && found[0].1.message.contains("a"));
        assert!(found[2].1.message.contains("b"));
        assert!(found.iter().all(|(_, p)| p.rule == Rule::DuplicateTarget));
    }

    #[test]
    fn output_keeps_shape_and_counts() {
        let out = into_output(&json!([{"targets": ["a:1", "b:2"]}, {"labels": {"z": "1", "a": "2"}, "targets": ["c:3"]}]), &Profile::SERVE).unwrap();
        assert_eq!(out.target_count, 3);
        assert_eq!(out.group_count, 2);
        assert_eq!(
            String::from_utf8(out.groups_json.clone()).unwrap(),
            r#"{"targets":["a:1","b:2"]},{"labels":{"a":"2","z":"1"},"targets":["c:3"]}"#
        );
    }
}
