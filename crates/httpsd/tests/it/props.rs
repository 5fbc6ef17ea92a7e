//! Property tests (issue 20, item 3) of what httpsd takes from outside: target files
//! (JSON and YAML), the Python-compatible encoder, and request paths.
//! `PROPTEST_CASES=100000 cargo test -p httpsd --test it prop_` runs them longer.

use std::io::{Read, Write};
use std::time::Duration;

use httpsd::static_files::parse_static;
use httpsd::tree::{GeneratorKind, SubPath, encode_path};
use httpsd::validate::{self, Profile};
use httpsd::{encode, pyjson};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

use crate::helpers::{Server, Tree};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        ..ProptestConfig::default()
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:._\\-\\[\\]]{0,12}",
        "[ -~]{0,8}",
        any::<String>(),
        "[\u{0}-\u{1f}\u{7f}\u{80}-\u{ff}üé☃\u{2028}\u{fffd}\u{10348}\"\\\\]{0,6}",
    ]
}

/// Any JSON value; `floats` adds non-integral numbers.
fn value(floats: bool) -> impl Strategy<Value = Value> {
    let base = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    let leaf = if floats {
        prop_oneof![
            5 => base,
            1 => any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
        ]
        .boxed()
    } else {
        base.boxed()
    };
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn target() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop_oneof![
            Just("a:1"), Just("host.example:9100"), Just("[::1]:80"), Just("10.0.0.1:65535"),
            Just("nohost"), Just(""), Just("x:99999"), Just("ü:1"), Just("a:1 "), Just(":80"),
        ].prop_map(|s| json!(s)),
        1 => value(false),
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("job".to_string()),
        Just("__meta_x".to_string()),
        Just("a1".to_string()),
        Just("bad-name".to_string()),
        Just(String::new()),
        Just("1x".to_string()),
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
    ]
}

/// Documents near the shape of a target list, so that both valid and invalid ones
/// (of every kind of mistake) are common.
fn target_doc(floats: bool) -> impl Strategy<Value = Value> {
    let labels = prop::collection::vec(
        (
            label_name(),
            prop_oneof![4 => text().prop_map(Value::String), 1 => value(floats)],
        ),
        0..4,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().collect()));
    let group = (
        prop::option::weighted(0.95, prop::collection::vec(target(), 0..4)),
        prop::option::of(prop_oneof![5 => labels, 1 => value(floats)]),
        prop::option::weighted(0.1, (text(), value(floats))),
    )
        .prop_map(|(targets, labels, extra)| {
            let mut g = Map::new();
            if let Some(t) = targets {
                g.insert("targets".into(), Value::Array(t));
            }
            if let Some(l) = labels {
                g.insert("labels".into(), l);
            }
            if let Some((k, v)) = extra {
                g.insert(k, v);
            }
            Value::Object(g)
        });
    prop_oneof![
        8 => prop::collection::vec(prop_oneof![9 => group, 1 => value(floats)], 0..4)
            .prop_map(Value::Array),
        1 => value(floats),
    ]
}

/// What the validator (the tree path) makes of the same bytes.
fn validator(bytes: &[u8]) -> Option<Result<Vec<u8>, ()>> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    Some(
        validate::into_output(&value, &Profile::SERVE)
            .map(|o| o.groups_json.clone())
            .map_err(|_| ()),
    )
}

proptest! {
    #![proptest_config(config(256))]

    /// A JSON target file is served exactly as the validator encodes it, or refused with
    /// an error naming the file; the one-pass encoder accepts exactly what the validator
    /// accepts; and serving is stable: the served list, read again, serves the same.
    #[test]
    fn prop_target_json_served_as_validated_or_refused(doc in target_doc(true), pretty in any::<bool>()) {
        let bytes = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap();
        let served = parse_static("dir/t.json", GeneratorKind::Json, &bytes);
        let expected = validator(&bytes).expect("serde_json wrote it");
        prop_assert_eq!(encode::encode_json(&bytes).is_some(), expected.is_ok());
        match (served, expected) {
            (Ok(out), Ok(groups)) => {
                prop_assert_eq!(&out.groups_json, &groups);
                let body = [b"[".as_slice(), &out.groups_json, b"]"].concat();
                let again = parse_static("dir/t.json", GeneratorKind::Json, &body)
                    .map_err(|e| TestCaseError::fail(e.message.clone()))?;
                prop_assert_eq!(&again.groups_json, &out.groups_json);
            }
            (Err(e), Err(())) => prop_assert!(e.message.contains("dir/t.json"), "{}", e.message),
            (served, expected) => prop_assert!(false, "served {:?} but the validator says {:?}", served, expected),
        }
    }

    /// A YAML target file serves the same as the same document in JSON (or both are
    /// refused, naming their file).
    #[test]
    fn prop_target_yaml_agrees_with_json(doc in target_doc(false)) {
        let yaml = yaml_serde::to_string(&doc).unwrap();
        let json = serde_json::to_vec(&doc).unwrap();
        let y = parse_static("d/t.yaml", GeneratorKind::Yaml, yaml.as_bytes());
        let j = parse_static("d/t.json", GeneratorKind::Json, &json);
        match (y, j) {
            (Ok(y), Ok(j)) => prop_assert_eq!(y, j),
            (Err(y), Err(j)) => {
                prop_assert!(y.message.contains("d/t.yaml"), "{}", y.message);
                prop_assert!(j.message.contains("d/t.json"), "{}", j.message);
            }
            (y, j) => prop_assert!(false, "yaml {:?} json {:?}\n{}", y, j, yaml),
        }
    }

    /// Arbitrary bytes as a target file never panic; an error names the file.
    #[test]
    fn prop_target_arbitrary_bytes_refused_naming_the_file(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..200), "[\\[\\]{}\",: a-z0-9\n]{0,80}".prop_map(String::into_bytes)],
        yaml in any::<bool>(),
    ) {
        let (rel, kind) = if yaml { ("x/y.yml", GeneratorKind::Yaml) } else { ("x/y.json", GeneratorKind::Json) };
        if let Err(e) = parse_static(rel, kind, &bytes) {
            prop_assert!(e.message.contains(rel), "{}", e.message);
        }
    }

    /// The encoder's output parses back to the value it encoded, and is pure ASCII.
    #[test]
    fn prop_pyjson_round_trips(v in value(false)) {
        let body = pyjson::to_body(&v);
        prop_assert!(body.is_ascii());
        let back: Value = serde_json::from_slice(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, v);
    }

    /// A request's sub-path either is refused or names components that stay below the
    /// root (no `.`/`..`, separators or NUL), and printing it back parses to the same.
    #[test]
    fn prop_subpath_never_escapes_the_root(raw in prop_oneof![
        any::<String>(),
        "([a-z]{1,3}|\\.{1,3}|%2[eEfF]|%5[cC]|%00|%[0-9a-fA-F]{2}|%|/|\\\\){0,10}",
    ]) {
        if let Ok(sub) = SubPath::parse(&raw) {
            let root = std::path::Path::new("/srv/root");
            let joined = sub.components().iter().fold(root.to_path_buf(), |p, c| p.join(c));
            prop_assert!(joined.starts_with(root));
            prop_assert_eq!(joined.components().count(), root.components().count() + sub.components().len());
            for c in sub.components() {
                prop_assert!(!c.is_empty() && c != "." && c != "..");
                prop_assert!(!c.contains('/') && !c.contains('\\') && !c.contains('\0'));
            }
            let printed = encode_path(&sub.as_rel());
            prop_assert_eq!(SubPath::parse(&printed).ok(), Some(sub));
        }
    }
}

/// The encoder writes what CPython's `json.dumps(sort_keys=True, ensure_ascii=True,
/// separators=(",", ":"))` writes, floats included: checked against real python3 for a
/// batch of generated values.
#[test]
fn prop_pyjson_matches_python_json_dumps() {
    crate::helpers::require_python();
    let mut runner = TestRunner::new(config(256));
    let strategy = value(true);
    let values: Vec<Value> = (0..cases(256))
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let input: String = values
        .iter()
        .map(|v| serde_json::to_string(v).unwrap() + "\n")
        .collect();
    let script = "import json,sys\nfor line in sys.stdin:\n    sys.stdout.write(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=True, separators=(',', ':')) + '\\n')\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let lines: Vec<&[u8]> = out.stdout.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), values.len());
    for (v, py) in values.iter().zip(lines) {
        assert_eq!(
            String::from_utf8_lossy(&pyjson::to_body(v)),
            String::from_utf8_lossy(py),
            "for {v}"
        );
    }
}

/// Sends `target` (any bytes but CR, LF and space) on a raw connection; the status.
fn raw_status(addr: &str, target: &[u8]) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    s.write_all(&req).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let status = buf
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, buf)
}

/// The real server, asked for arbitrary request targets (raw bytes, query strings,
/// encoded dots and separators, very long ones), answers only 200, 400, 404 or 414,
/// and never serves the sentinel file that sits next to its root.
#[test]
fn prop_request_paths_answer_200_400_404_414_only() {
    let tree = Tree::new();
    tree.write("secret.json", r#"[{"targets":["sentinel:1"]}]"#);
    tree.write("srv/a/ok.json", r#"[{"targets":["ok:1"]}]"#);
    tree.write("srv/b.json", r#"[{"targets":["b:1"]}]"#);
    std::thread::sleep(Duration::from_millis(300));
    let srv = Server::serve(&tree.root().join("srv"), &[]);
    let addr = srv
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let tricky: Vec<Vec<u8>> = [
        "..",
        "%2e%2E",
        "%2f",
        "%5c",
        "secret.json",
        "a",
        "%00",
        "%",
        "%ff",
        "?x=1&y=%zz",
        "#f",
        "\\",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let segment = prop_oneof![
        prop::sample::select(tricky),
        prop::collection::vec(
            any::<u8>().prop_filter("no CR, LF or space", |b| !b" \r\n".contains(b)),
            0..6
        ),
        (1usize..40_000).prop_map(|n| vec![b'a'; n]),
    ];
    let target = (
        prop_oneof![
            Just(b"/targets".to_vec()),
            Just(b"/targets/".to_vec()),
            Just(b"/".to_vec()),
            Just(b"".to_vec())
        ],
        prop::collection::vec(
            prop::collection::vec(segment, 1..3).prop_map(|s| s.concat()),
            0..5,
        ),
    )
        .prop_map(|(start, segs)| {
            let mut t = start;
            for s in segs {
                t.push(b'/');
                t.extend(s);
            }
            t
        });
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&target, |t| {
            let (status, body) = raw_status(&addr, &t);
            seen.borrow_mut().insert(status);
            prop_assert!(
                [200, 400, 404, 414].contains(&status),
                "{} for {:?}",
                status,
                String::from_utf8_lossy(&t)
            );
            let body = String::from_utf8_lossy(&body);
            prop_assert!(
                !body.contains("sentinel:1"),
                "{:?} served the sentinel",
                String::from_utf8_lossy(&t)
            );
            Ok(())
        })
        .unwrap();
    // The server is still up and serving.
    assert_eq!(raw_status(&addr, b"/targets/a").0, 200);
    // Not vacuous: the generated targets reach the router's answers, not only hyper's.
    let seen = seen.into_inner();
    assert!([200, 400, 404].iter().all(|s| seen.contains(s)), "{seen:?}");
}

/// The document generator is not vacuous: it yields both served and refused files.
#[test]
fn prop_target_docs_cover_both_outcomes() {
    let mut runner = TestRunner::new(config(256));
    let strategy = target_doc(true);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..400 {
        let doc = strategy.new_tree(&mut runner).unwrap().current();
        match parse_static(
            "t.json",
            GeneratorKind::Json,
            &serde_json::to_vec(&doc).unwrap(),
        ) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(ok > 20 && refused > 20, "{ok} served, {refused} refused");
}
