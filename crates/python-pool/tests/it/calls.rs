//! Calls that work: parameters, function choice, import modes, environment, batches.

use std::sync::Arc;

use python_pool::{BatchEvent, BatchItem, Entry, Import, Pool, PoolError, PoolSettings, Warmth};
use serde_json::json;

use crate::support::{Tree, call, eventually};

/// A module imported once and kept: its state accumulates across calls (1, 2, 3),
/// while a fresh import starts over every time and a cached one keeps state until
/// the tree changes.
#[tokio::test]
async fn a_kept_module_keeps_its_state_across_calls() {
    let t = Tree::new();
    let m = t.write(
        "counter.py",
        "COUNT = 0\ndef collect():\n    global COUNT\n    COUNT += 1\n    return COUNT\n",
    );
    let (pool, _) = t.pool(1).await;
    for expected in 1..=3 {
        let v = pool.call(call(&m, "collect", Import::Kept)).await.unwrap();
        assert_eq!(v, json!(expected));
    }
    for _ in 0..3 {
        let v = pool.call(call(&m, "collect", Import::Fresh)).await.unwrap();
        assert_eq!(v, json!(1), "a fresh import starts over");
    }
    // The kept module is not disturbed by the other modes' imports.
    let v = pool.call(call(&m, "collect", Import::Kept)).await.unwrap();
    assert_eq!(v, json!(4));
    // An edited helper under the root drops cached modules, not kept ones.
    t.write("helper.py", "X = 1\n");
    let user = t.write(
        "user.py",
        "import helper\nN = 0\ndef f():\n    global N\n    N += 1\n    return N\n",
    );
    assert_eq!(
        pool.call(call(&user, "f", Import::Cached)).await.unwrap(),
        json!(1)
    );
    assert_eq!(
        pool.call(call(&user, "f", Import::Cached)).await.unwrap(),
        json!(2)
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.write("helper.py", "X = 2  # edited\n");
    assert_eq!(
        pool.call(call(&user, "f", Import::Cached)).await.unwrap(),
        json!(1)
    );
    let v = pool.call(call(&m, "collect", Import::Kept)).await.unwrap();
    assert_eq!(v, json!(5));
    pool.shutdown();
}

/// Parameters arrive as keyword arguments in order; the first defined function of
/// the entry's list is called; the environment is set for the call only.
#[tokio::test]
async fn parameters_functions_and_environment() {
    let t = Tree::new();
    let m = t.write(
        "echo.py",
        "import os\ndef first(**p):\n    return {'order': list(p), 'p': p, 'env': os.environ.get('POOL_TEST_VAR')}\n\
         def second(**p):\n    return 'second'\n",
    );
    let (pool, _) = t.pool(2).await;
    let mut c = call(&m, "first", Import::Cached);
    c.params = vec![("b".into(), "2".into()), ("a".into(), "1 é".into())];
    c.entry = Arc::new(Entry {
        functions: vec!["missing".into(), "first".into()],
        import: Import::Cached,
        env: vec![("POOL_TEST_VAR".into(), "on".into())],
        host: None,
    });
    let v = pool.call(c).await.unwrap();
    assert_eq!(
        v,
        json!({"order": ["b", "a"], "p": {"b": "2", "a": "1 é"}, "env": "on"})
    );
    let v = pool.call(call(&m, "first", Import::Cached)).await.unwrap();
    assert_eq!(v["env"], json!(null), "the variable is gone after its call");
    let e = pool
        .call(call(&m, "nowhere", Import::Cached))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "echo.py: the module defines no nowhere(**params) function"
    );
    pool.shutdown();
}

/// A batch reports every item once, in its own result, even when one crashes its
/// worker in the middle; forked workers share the load.
#[tokio::test]
async fn a_batch_reports_every_item_once() {
    let t = Tree::new();
    let mut items = Vec::new();
    for i in 0..30 {
        let source = if i == 7 {
            "import os\ndef run():\n    os._exit(4)\n".to_string()
        } else {
            format!("def run():\n    print('item {i}')\n    return {i}\n")
        };
        let module = t.write(&format!("m{i:02}.py"), &source);
        items.push(BatchItem {
            index: i,
            name: format!("m{i:02}.py"),
            module,
        });
    }
    let out = Arc::new(crate::support::Recorder::default());
    let pool = Pool::start(t.settings(3, out.clone()), Warmth::Forked)
        .await
        .expect("the pool starts");
    let mut events = pool.run_batch(items, Arc::new(Entry::new("run", Import::Fresh)));
    let mut done = std::collections::BTreeMap::new();
    while let Some(event) = events.recv().await {
        if let BatchEvent::Done(index, result, _) = event {
            assert!(
                done.insert(index, result).is_none(),
                "{index} reported twice"
            );
            if done.len() == 30 {
                break;
            }
        }
    }
    assert_eq!(done.len(), 30);
    for (index, result) in &done {
        match result {
            Ok(v) => assert_eq!(v, &json!(index)),
            Err(PoolError::Died { name, reason, .. }) => {
                assert_eq!(*index, 7);
                assert_eq!(name, "m07.py");
                assert_eq!(reason, "exited with status 4");
            }
            Err(e) => panic!("{index}: {e}"),
        }
    }
    // Output is attributed to the module that printed it. It is read from the workers'
    // stderr, apart from the replies, so it may come after the last reply.
    let names = [0, 12, 29].map(|i| format!("m{i:02}.py"));
    eventually(|| names.iter().all(|n| !out.of(n).is_empty())).await;
    for (i, name) in [0, 12, 29].iter().zip(&names) {
        assert_eq!(out.of(name), vec![format!("item {i}")], "{name}");
    }
    pool.shutdown();
}

/// A pool of no workers starts nothing and says so on every call.
#[tokio::test]
async fn a_pool_without_workers_refuses_calls() {
    let mut s = PoolSettings::new("/");
    s.workers = 0;
    let pool = Pool::start(s, Warmth::Warm).await.unwrap();
    let e = pool
        .call(call("/nowhere.py", "f", Import::Cached))
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::Disabled { .. }), "{e}");
}
