//! How a worker's interpreter gets the runner: the `python -c` boot code, the runner
//! script (`runner.py`, beside this file) and the cache of its compiled code.

/// The runner script, sent to each worker at start.
const RUNNER_SOURCE: &str = include_str!("runner.py");

/// What `python -c` runs (with `NAME` replaced by the program's name, see [`boot_code`],
/// so that `ps` tells whose workers these are): read the runner's length and source from stdin, then the
/// line naming the code cache directory (empty: none), and start the runner (which
/// reads its settings line itself). Compiling the runner was a third of a worker's
/// start-up, so its code object is kept in the cache directory (`marshal`, as
/// Python keeps `.pyc` files), under a name and a header made of the interpreter's
/// bytecode magic number and a hash of the source and its file name: another Python,
/// another runner or another program's runner never loads it, and anything unreadable is compiled and written again (to a
/// temporary file, then renamed). Nothing else is imported here, so the runner
/// decides what a worker's start-up costs.
const BOOT: &str = r#"import sys, marshal
f = sys.stdin.buffer
src = f.read(int(f.readline()))
name = "<NAME-runner>"
cache = f.readline()[:-1].decode("utf-8", "surrogateescape")
code = path = None
if cache:
    try:
        import _imp, _frozen_importlib_external as bootstrap
        key = bootstrap.MAGIC_NUMBER + _imp.source_hash(bootstrap._RAW_MAGIC_NUMBER, src + name.encode())
        path = "%s/runner-%s.%s.bin" % (cache, key[4:].hex(), sys.implementation.cache_tag)
        with open(path, "rb") as h:
            data = h.read()
        if data[:12] == key:
            code = marshal.loads(data[12:])
            if code.__class__.__name__ != "code":
                code = None
    except Exception:
        code = None
if code is None:
    code = compile(src, name, "exec")
    if path:
        try:
            import os
            os.makedirs(cache, 0o700, exist_ok=True)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            with open(tmp, "wb") as h:
                h.write(key + marshal.dumps(code))
            os.replace(tmp, path)
        except Exception:
            pass
g = {"__name__": "__pool_runner__", "__file__": name}
exec(code, g)
g["main"](f)
"#;

/// The boot code of `name`'s workers (`name` is cut to ASCII letters, digits, `-`
/// and `_`: it is put in Python source).
pub(crate) fn boot_code(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    BOOT.replace(
        "NAME",
        if name.is_empty() {
            "python-pool"
        } else {
            &name
        },
    )
}

/// What a first worker reads on its stdin before the handshake: the runner's length
/// and source, the code cache line (`code_cache`: an absolute path on one line, or
/// empty) and the settings line (`settings`, JSON).
pub(crate) fn boot_input(
    code_cache: &str,
    settings: &serde_json::Value,
) -> serde_json::Result<Vec<u8>> {
    let mut input = format!("{}\n{RUNNER_SOURCE}{code_cache}\n", RUNNER_SOURCE.len()).into_bytes();
    serde_json::to_writer(&mut input, settings)?;
    input.push(b'\n');
    Ok(input)
}
