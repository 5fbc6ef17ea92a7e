//! Executable generators: any language, params in env and on stdin, errors named.

use serde_json::json;

use crate::helpers::{Server, Tree, get, require_python};

#[tokio::test]
async fn shell_and_python_programs_get_params() {
    require_python();
    let tree = Tree::new();
    tree.write_exec(
        "sh/gen",
        "#!/bin/sh\nread input\nprintf '[{\"targets\":[\"sh:1\"],\"labels\":{\"cluster\":\"%s\",\"cwd\":\"%s\"}}]' \"$HTTPSD_PARAM_CLUSTER\" \"$(basename \"$PWD\")\"\n",
    );
    tree.write_exec(
        "py/gen",
        "#!/usr/bin/env python3\nimport json, os, sys\nparams = json.load(sys.stdin)\nprint('debug output', file=sys.stderr)\nprint(json.dumps([{\"targets\": [\"py:1\"], \"labels\": {k.replace('-', '_'): v for k, v in params.items()} | {\"env\": os.environ.get(\"HTTPSD_PARAM_MY_KEY\", \"\")}}]))\n",
    );
    let srv = Server::serve(tree.root(), &[]);
    let root_name = tree
        .root()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let sh = get(&srv.url("/targets/sh?cluster=us1&cluster=eu")).await;
    assert_eq!(sh.status, 200, "{}", sh.body);
    assert_eq!(
        sh.json(),
        json!([{"targets": ["sh:1"], "labels": {"cluster": "us1", "cwd": root_name}}])
    );
    let py = get(&srv.url("/targets/py?my-key=v%201&debug=1")).await;
    assert_eq!(py.status, 200, "{}", py.body);
    assert_eq!(
        py.json(),
        json!([{"targets": ["py:1"], "labels": {"my_key": "v 1", "debug": "1", "env": "v 1"}}])
    );
    // The log is read by a helper thread: give it a moment to catch up.
    crate::helpers::wait_for(
        std::time::Duration::from_secs(5),
        "stderr in the log",
        || async { srv.log_text().contains("debug output").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn failures_name_the_program_and_others_keep_serving() {
    let tree = Tree::new();
    tree.write("ok/t.json", r#"[{"targets":["ok:1"]}]"#);
    tree.write_exec("exit/gen", "#!/bin/sh\necho 'it broke' >&2\nexit 3\n");
    tree.write_exec("badjson/gen", "#!/bin/sh\necho 'hello world'\n");
    tree.write_exec("notaprogram/gen", "this is just text with an execute bit\n");
    tree.write_exec("invalid/gen", "#!/bin/sh\necho '[{\"targets\":\"a:1\"}]'\n");
    let marker = tree.root().join("child-alive");
    tree.write_exec(
        "hang/gen",
        &format!(
            "#!/bin/sh\n(sleep 30; touch {}) &\nsleep 30\n",
            marker.display()
        ),
    );
    let srv = Server::serve(tree.root(), &["--max-run-time", "1"]);
    for (path, kind, text) in [
        ("exit", "exit", "exited with status 3"),
        ("badjson", "parse", "printed invalid JSON"),
        ("notaprogram", "exit", "not a program"),
        ("invalid", "invalid", "must be a list of strings"),
    ] {
        let r = get(&srv.url(&format!("/targets/{path}"))).await;
        assert_eq!(r.status, 500, "{path}: {}", r.body);
        let g = &r.json()["generators"][0];
        assert_eq!(g["generator"], format!("{path}/gen"));
        assert_eq!(g["kind"], kind, "{path}: {}", r.body);
        assert!(
            g["message"].as_str().unwrap().contains(text),
            "{path}: {}",
            r.body
        );
    }
    let exit = get(&srv.url("/targets/exit")).await.json();
    assert_eq!(exit["generators"][0]["traceback"], "it broke");
    // Stopped at --max-run-time: a "timeout", not the end of its sleep.
    let r = get(&srv.url("/targets/hang")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["generators"][0]["kind"], "timeout");
    assert_eq!(get(&srv.url("/targets/ok")).await.status, 200);
    // The whole process group died: no process of the program survives.
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("touch {}", marker.display())])
        .output()
        .expect("pgrep");
    assert!(
        out.stdout.is_empty(),
        "a child of the timed-out program survived"
    );
}
