//! Module affinity ([`Dedicated`]): a kept module lives on exactly one worker, so its
//! state accumulates over every call, concurrent ones included; and a host function
//! ([`Entry::host`]) adapts a module's contract.

use std::collections::HashSet;
use std::sync::Arc;

use python_pool::{Dedicated, Entry, Import};
use serde_json::json;

use crate::support::{Recorder, Tree, call};

const COUNTER: &str = "import os\nCOUNT = 0\ndef collect():\n    global COUNT\n    COUNT += 1\n    return [os.getpid(), COUNT]\n";

/// Forty concurrent calls of one kept module see one state: one pid, and the counts
/// 1..=40 each exactly once (a state split over workers would repeat counts). A
/// second module gets its own worker.
#[tokio::test]
async fn a_kept_module_lives_on_one_worker() {
    let t = Tree::new();
    let a = t.write("a.py", COUNTER);
    let b = t.write("b.py", COUNTER);
    // Four workers allowed: affinity must still keep each module on one.
    let pools = Arc::new(Dedicated::new(t.settings(4, Arc::new(Recorder::default()))));
    let calls = (0..40).map(|_| {
        let pools = pools.clone();
        let a = a.clone();
        tokio::spawn(async move { pools.call_raw(call(&a, "collect", Import::Kept)).await })
    });
    let mut pids = HashSet::new();
    let mut counts = Vec::new();
    for c in futures_join(calls).await {
        let raw = c.expect("the call runs").expect("the call succeeds");
        let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        pids.insert(v[0].as_i64().unwrap());
        counts.push(v[1].as_i64().unwrap());
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<_>>(),
        "one state, no count twice"
    );
    assert_eq!(pids.len(), 1, "one worker for the module: {pids:?}");
    let raw = pools
        .call_raw(call(&b, "collect", Import::Kept))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
    assert_eq!(v[1], json!(1), "another module has its own state");
    assert!(
        !pids.contains(&v[0].as_i64().unwrap()),
        "and its own worker"
    );
    assert_eq!(pools.modules().len(), 2);
    pools.retain(|m| m == a);
    assert_eq!(pools.modules(), vec![a.clone()]);
    pools.shutdown();
}

/// `Entry::host` calls a function of another module with the path, a loader and the
/// parameters, in place of the module's own function.
#[tokio::test]
async fn a_host_function_adapts_the_module() {
    let t = Tree::new();
    t.write(
        "_host.py",
        "def host(path, load, params):\n    m = load()\n    return {'path': path.rsplit('/', 1)[-1], 'n': m.collect()[1], 'p': params}\n",
    );
    let m = t.write("m.py", COUNTER);
    let pools = Dedicated::new(t.settings(1, Arc::new(Recorder::default())));
    let mut c = call(&m, "unused", Import::Kept);
    c.entry = Arc::new(Entry {
        host: Some("_host:host".into()),
        ..Entry::new("unused", Import::Kept)
    });
    c.params = vec![("x".into(), "1".into())];
    for n in 1..=2 {
        let raw = pools.call_raw(c.clone()).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(v, json!({"path": "m.py", "n": n, "p": {"x": "1"}}));
    }
    pools.shutdown();
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}
