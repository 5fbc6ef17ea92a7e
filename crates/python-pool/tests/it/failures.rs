//! Calls that fail: each fails alone, with a clear error, and the pool carries on.

use std::time::Duration;

use python_pool::{Import, Pool, PoolError, Warmth};
use serde_json::json;

use crate::support::{Recorder, Tree, call, eventually, worker_pid};

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().as_bytes().first()),
            Some(Some(b'Z' | b'X'))
        ),
        Err(_) => false,
    }
}

/// A call past its deadline fails with `Timeout`; its worker and what it started are
/// killed; the next call gets a new worker.
#[tokio::test]
async fn a_call_past_its_deadline_is_killed_with_its_group() {
    let t = Tree::new();
    let pid_file = t.root().join("child.pid");
    let m = t.write(
        "hang.py",
        &format!(
            "import subprocess, time\ndef run():\n    c = subprocess.Popen(['sleep', '3600'])\n    \
             open({:?}, 'w').write(str(c.pid))\n    time.sleep(3600)\n",
            pid_file.display().to_string()
        ),
    );
    let (pool, _) = t.pool(1).await;
    let before = worker_pid(&pool, &t).await;
    let mut c = call(&m, "run", Import::Fresh);
    c.deadline = Some(Duration::from_secs(1));
    let e = pool.call(c).await.unwrap_err();
    assert_eq!(
        e,
        PoolError::Timeout {
            name: "hang.py".into(),
            limit: Duration::from_secs(1)
        }
    );
    assert_eq!(
        e.to_string(),
        "hang.py: still running after 1s; its Python worker was killed"
    );
    let child: i32 = std::fs::read_to_string(&pid_file)
        .expect("the call started its child")
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(|| !alive(child)).await,
        "the call's child {child} outlived it"
    );
    assert!(
        eventually(|| !alive(before as i32)).await,
        "the worker lives on"
    );
    let after = worker_pid(&pool, &t).await;
    assert_ne!(before, after, "a new worker answers");
    pool.shutdown();
}

/// A worker killed by a signal, or one that calls `os._exit`, fails its call with its
/// exit status and the output it left; the pool replaces it.
#[tokio::test]
async fn a_dying_worker_fails_its_call_alone() {
    let t = Tree::new();
    let kill = t.write(
        "kill.py",
        "import os\ndef run():\n    print('about to die')\n    os.kill(os.getpid(), 9)\n",
    );
    let exit = t.write("exit.py", "import os\ndef run():\n    os._exit(3)\n");
    let ok = t.write("ok.py", "def run():\n    return 'fine'\n");
    let (pool, _) = t.pool(2).await;
    let e = pool
        .call(call(&kill, "run", Import::Cached))
        .await
        .unwrap_err();
    let PoolError::Died { name, reason, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(
        (name.as_str(), reason.as_str()),
        ("kill.py", "killed by SIGKILL")
    );
    assert_eq!(
        e.to_string(),
        "kill.py: the Python worker running it died (killed by SIGKILL)"
    );
    assert!(
        e.traceback().unwrap_or_default().contains("about to die"),
        "{e:?}"
    );
    let e = pool
        .call(call(&exit, "run", Import::Cached))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PoolError::Died { reason, .. } if reason == "exited with status 3"),
        "{e}"
    );
    for _ in 0..4 {
        let v = pool.call(call(&ok, "run", Import::Cached)).await.unwrap();
        assert_eq!(v, json!("fine"));
    }
    pool.shutdown();
}

/// An exception is the call's error, with the user's traceback; a result that is not
/// JSON is refused without one.
#[tokio::test]
async fn exceptions_and_unusable_results() {
    let t = Tree::new();
    let m = t.write(
        "bad.py",
        "def boom():\n    raise ValueError('no luck')\ndef obj():\n    return object()\n",
    );
    let (pool, _) = t.pool(1).await;
    let e = pool
        .call(call(&m, "boom", Import::Cached))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "bad.py: ValueError: no luck");
    let tb = e.traceback().expect("a traceback");
    assert!(tb.contains("bad.py\", line 2, in boom"), "{tb}");
    assert!(
        !tb.contains("python-pool-runner"),
        "runner frames dropped: {tb}"
    );
    let e = pool
        .call(call(&m, "obj", Import::Cached))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bad.py: the result of type object cannot be converted to JSON"),
        "{e}"
    );
    assert_eq!(e.traceback(), None);
    pool.shutdown();
}

/// What user code prints, on stdout, stderr or fd 1 directly, never reaches the
/// protocol channel: it is passed to the sink, attributed to its call.
#[tokio::test]
async fn prints_do_not_corrupt_the_channel() {
    let t = Tree::new();
    let m = t.write(
        "noisy.py",
        "import os, sys\nprint('at import')\ndef run():\n    print('{\"id\": 1, \"ok\": true, \"result\": 666}')\n    \
         sys.stderr.write('to stderr\\n')\n    os.write(1, b'to fd 1\\n')\n    return 42\n",
    );
    let (pool, out) = t.pool(1).await;
    for _ in 0..3 {
        let v = pool.call(call(&m, "run", Import::Fresh)).await.unwrap();
        assert_eq!(v, json!(42));
    }
    // Output is read from the workers' stderr, apart from the replies: it may come later.
    let count = |text: &str| out.of("noisy.py").iter().filter(|l| *l == text).count();
    eventually(|| {
        ["at import", "to stderr", "to fd 1"]
            .iter()
            .all(|t| count(t) >= 3)
    })
    .await;
    let lines = out.of("noisy.py");
    for text in ["at import", "to stderr", "to fd 1"] {
        assert_eq!(
            lines.iter().filter(|l| l.as_str() == text).count(),
            3,
            "{text}: {lines:?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("python-pool-call")),
        "{lines:?}"
    );
    pool.shutdown();
}

/// Under a memory limit, a call that allocates past it gets `MemoryError`, and its
/// worker is replaced afterwards.
#[tokio::test]
async fn a_memory_error_replaces_the_worker() {
    let t = Tree::new();
    let m = t.write("hog.py", "def run():\n    return len(bytearray(1 << 30))\n");
    let out = std::sync::Arc::new(Recorder::default());
    let mut settings = t.settings(1, out);
    settings.memory_limit = 512 * 1024 * 1024;
    let pool = Pool::start(settings, Warmth::Warm).await.expect("starts");
    let before = worker_pid(&pool, &t).await;
    let e = pool.call(call(&m, "run", Import::Fresh)).await.unwrap_err();
    assert!(e.to_string().contains("MemoryError"), "{e}");
    let after = worker_pid(&pool, &t).await;
    assert_ne!(before, after, "the worker was replaced");
    pool.shutdown();
}

/// An interpreter that is not Python fails the start with the option's name.
#[tokio::test]
async fn a_broken_interpreter_fails_the_start() {
    let t = Tree::new();
    let mut settings = t.settings(1, std::sync::Arc::new(Recorder::default()));
    settings.python = "/bin/false".into();
    settings.python_option = "--interpreter".into();
    let Err(e) = Pool::start(settings, Warmth::Warm).await else {
        panic!("/bin/false started");
    };
    assert!(
        e.message
            .starts_with("\"/bin/false\" is not a working Python 3 interpreter (--interpreter)"),
        "{e}"
    );
}
