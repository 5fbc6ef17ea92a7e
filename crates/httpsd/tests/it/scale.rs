//! Big documents (issue 19): served byte for byte as Python writes them, through the
//! one-pass encoder, with memory proportional to the bytes served.

use std::time::Duration;

use crate::helpers::{Server, Tree, get, python3_stdout, require_python, wait_for};

/// Writes `rel` (a JSON document of `n` groups: unicode, escapes, label order, null
/// labels, pretty-printed or not) with python3 and returns the body the original
/// serves for it: `json.dumps(..., sort_keys=True, separators=(",", ":"))` and `\n`.
fn python_document(tree: &Tree, rel: &str, n: usize, indent: &str) -> Vec<u8> {
    let script = r#"
import json, sys
path, n, indent = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ["\u00e9t\u00e9", "\U0001F600", "q\"b\\s/", "tab\tnl\n", "\x01\x7f", "\u2028", "plain"]
groups = []
for i in range(n):
    g = {"targets": ["10.%d.%d.%d:%d" % (i >> 16 & 255, i >> 8 & 255, i & 255, 9000 + i % 7), names[i % 7] + str(i)][: 1 + i % 2]}
    if i % 3 == 0:
        g["labels"] = {"zone": names[(i + 1) % 7], "a_b": str(i), "A": "", "_x": names[i % 7]}
    elif i % 3 == 1:
        g = {"labels": None, **g}
    groups.append(g)
with open(path, "w", encoding="utf-8") as f:
    json.dump(groups, f, ensure_ascii=(indent == ""), indent=(int(indent) if indent else None))
sys.stdout.write(json.dumps(groups, sort_keys=True, separators=(",", ":")) + "\n")
"#;
    let path = tree.root().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let n = n.to_string();
    python3_stdout(&[
        "-c".as_ref(),
        script.as_ref(),
        path.as_ref(),
        n.as_ref(),
        indent.as_ref(),
    ])
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in bytes.
fn rss_and_peak(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn a_big_static_file_is_served_as_python_writes_it_in_bounded_memory() {
    require_python();
    let tree = Tree::new();
    let want = python_document(&tree, "big/targets.json", 200_000, "");
    let size = std::fs::metadata(tree.root().join("big/targets.json"))
        .unwrap()
        .len();
    let srv = Server::serve(tree.root(), &[]);
    let body = wait_for(Duration::from_secs(60), "the big path", || async {
        let r = get(&srv.url("/targets/big")).await;
        (r.status == 200).then_some(r.body)
    })
    .await;
    assert!(body.as_bytes() == want, "the body differs from Python's");
    // The file is parsed without a tree (a tree of it takes well over 10x its size)
    // and only the encoded bytes are kept: the body and the path's merged copy.
    let (rss, peak) = rss_and_peak(srv.pid());
    let base = 64 << 20;
    assert!(
        peak <= 5 * size + base,
        "peak RSS {peak} for a file of {size} bytes"
    );
    assert!(
        rss <= 3 * size + base,
        "RSS {rss} for a file of {size} bytes"
    );
}

#[tokio::test]
async fn pretty_printed_and_yaml_files_give_the_same_bytes() {
    require_python();
    let tree = Tree::new();
    let want = python_document(&tree, "p/targets.json", 3_000, "2");
    tree.write(
        "y/t.yaml",
        "- targets: ['a:1', \"\\u00e9:2\"]\n  labels: {z: '1', a: \"\\U0001F600\"}\n- targets: []\n  labels: null\n",
    );
    // Duplicate keys keep their last value, as they did with a tree.
    tree.write(
        "d/t.json",
        r#"[{"targets":[1],"labels":{"a":"1","a":"2"},"targets":["x:1"]}]"#,
    );
    let srv = Server::serve(tree.root(), &[]);
    let p = get(&srv.url("/targets/p")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.as_bytes() == want, "the body differs from Python's");
    let y = get(&srv.url("/targets/y")).await;
    assert_eq!(
        y.body,
        "[{\"labels\":{\"a\":\"\\ud83d\\ude00\",\"z\":\"1\"},\"targets\":[\"a:1\",\"\\u00e9:2\"]},{\"labels\":null,\"targets\":[]}]\n"
    );
    let d = get(&srv.url("/targets/d")).await;
    assert_eq!(
        d.body,
        "[{\"labels\":{\"a\":\"2\"},\"targets\":[\"x:1\"]}]\n"
    );
}

#[tokio::test]
async fn executables_output_is_encoded_and_refused_as_before() {
    require_python();
    let tree = Tree::new();
    let want = python_document(&tree, "data/doc.txt", 20_000, "");
    let doc = tree.root().join("data/doc.txt");
    tree.write_exec("big/gen", &format!("#!/bin/sh\ncat '{}'\n", doc.display()));
    tree.write_exec(
        "dup/gen",
        "#!/bin/sh\ncat <<'EOF'\n[{\"targets\":[\"a:1\"],\"labels\":{\"k\":\"1\",\"k\":\"\\u00e9\"}}]\nEOF\n",
    );
    tree.write_exec(
        "float/gen",
        "#!/bin/sh\necho '[{\"targets\":[\"a:1\"],\"labels\":{\"k\":1.5}}]'\n",
    );
    let srv = Server::serve(tree.root(), &[]);
    let big = get(&srv.url("/targets/big")).await;
    assert_eq!(big.status, 200);
    assert!(
        big.body.as_bytes() == want,
        "the body differs from Python's"
    );
    let dup = get(&srv.url("/targets/dup")).await;
    assert_eq!(
        dup.body,
        "[{\"labels\":{\"k\":\"\\u00e9\"},\"targets\":[\"a:1\"]}]\n"
    );
    let float = get(&srv.url("/targets/float")).await;
    assert_eq!(float.status, 500, "{}", float.body);
    let g = &float.json()["generators"][0];
    assert_eq!(g["kind"], "invalid");
    assert_eq!(
        g["message"],
        "float/gen: group 0: label \"k\" must have a string value, got a number (1.5)"
    );
}
