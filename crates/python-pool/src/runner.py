# The python-pool worker: embedded in the program that uses the python-pool crate and
# started by it as `python -c BOOT`; BOOT reads from stdin a line with the length of
# this source, then the source, runs it as "<NAME-runner>" and calls main(stdin),
# which reads one JSON line of settings (and, when they list "copies", forks a copy of
# itself for each).
#
# Protocol (private to the crate, one JSON object per line; protocol.rs):
#   in  (fd 0 at start, moved to a private fd): {"id", "path", "params", "functions",
#        "import", "env"}, or a batch {"id", "batch": [path, ...], "functions", "import",
#        "env"} whose paths are called without parameters
#   out (fd 1 at start, moved to a private fd): {"id", "ok", "size" | "kind",
#        "message", "traceback", "recycle", "secs"}, one per request; a batch gets
#        one per path, in order, each with its "index", written as soon as it is done
#        (a batch stops early after a reply with "recycle"). A successful reply's line
#        is followed by "size" bytes: the result's JSON, sent as it is (no copy into
#        the line, and the pool reads it straight into a buffer of that size)
# After the handshake, fd 0 is /dev/null and fd 1 is fd 2 (a pipe the pool reads),
# so nothing user code prints can reach the protocol channel.
import importlib
import importlib.machinery
import os
import sys
import time

# Starts the line written to the output stream before each call runs (OUTPUT_MARK in
# output.rs).
OUTPUT_MARK = b"\x1e\x1fpython-pool-call "

try:
    # What importlib.util re-exports, without the import of importlib.util (and of
    # contextlib, functools, collections) that would cost every worker's start-up.
    from importlib._bootstrap import spec_from_loader
except ImportError:  # pragma: no cover - a Python without these internals
    from importlib.util import spec_from_loader


def _json_codec():
    """(dumps_result, dumps_protocol, loads) built on the _json accelerator alone.

    Importing the json package imports re (and enum): a third of a worker's start-up.
    _json is the C code json.dumps and json.loads use for this very work (one-shot
    encoding without indent), called with the same arguments, so results encode
    exactly as with json.dumps. Falls back to the json package when _json is missing
    or behaves differently."""
    try:
        import _json

        class _Context:
            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int
            memo = {}

            @staticmethod
            def parse_constant(name):
                raise ValueError("unexpected JSON constant %s" % name)

        scan = _json.make_scanner(_Context)

        def default(o):
            # JSONEncoder.default's error, word for word.
            raise TypeError("Object of type %s is not JSON serializable" % o.__class__.__name__)

        def encoder(string, allow_nan):
            make = _json.make_encoder

            def dumps(obj):
                if isinstance(obj, str):
                    return string(obj)
                return "".join(make({}, default, string, None, ":", ",", False, False, allow_nan)(obj, 0))

            return dumps

        def loads(data):
            text = (data.decode("utf-8") if isinstance(data, bytes) else data).strip()
            try:
                obj, end = scan(text, 0)
            except StopIteration:
                raise ValueError("not JSON: %r" % text[:80])
            if end != len(text):
                raise ValueError("extra data after the JSON value")
            return obj

        dumps_result = encoder(_json.encode_basestring, False)
        dumps_protocol = encoder(_json.encode_basestring_ascii, True)
        sample = {"a": [1, -2.5, "\u00e9\n", True, False, None], "b": {}}
        if (
            loads(b'{"a":[1,-2.5,"\\u00e9\\n",true,false,null],"b":{}}\n') != sample
            or dumps_result(sample) != '{"a":[1,-2.5,"\u00e9\\n",true,false,null],"b":{}}'
            or dumps_protocol(sample) != '{"a":[1,-2.5,"\\u00e9\\n",true,false,null],"b":{}}'
        ):
            raise ValueError("_json behaves differently")
        return dumps_result, dumps_protocol, loads
    except Exception:
        import json

        return (
            lambda o: json.dumps(o, ensure_ascii=False, allow_nan=False, separators=(",", ":")),
            lambda o: json.dumps(o, separators=(",", ":")),
            json.loads,
        )


# Bound once, so user code that monkeypatches json or os cannot break the protocol.
_dumps_result, _dumps, _loads = _json_codec()
_os_write = os.write
_os_stat = os.stat
_os_open = os.open
_os_read = os.read
_os_close = os.close
_O_RDONLY_CLOEXEC = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_READ_SIZE = 1 << 16
_CACHE_TAG = sys.implementation.cache_tag
_ModuleType = type(sys)
_SourceFileLoader = importlib.machinery.SourceFileLoader
_ModuleSpec = importlib.machinery.ModuleSpec

# Modules provided by source when nothing installed provides them (settings "shims").
_SHIM_SOURCES = {}


class _ShimFinder:
    """Provides the shim modules (a package when another shim is inside it) when no
    installed package does.

    It sits last on sys.meta_path, so an installed package always wins."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in _SHIM_SOURCES:
            return None
        prefix = name + "."
        return spec_from_loader(
            name, cls, is_package=any(n.startswith(prefix) for n in _SHIM_SOURCES)
        )

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        exec(_SHIM_SOURCES[module.__name__], module.__dict__)


def _read(path):
    # A generator is a regular file: a short read is its end (no extra read to see it).
    fd = _os_open(path, _O_RDONLY_CLOEXEC)
    try:
        data = chunk = _os_read(fd, _READ_SIZE)
        while len(chunk) == _READ_SIZE:
            chunk = _os_read(fd, _READ_SIZE)
            data += chunk
        return data
    finally:
        _os_close(fd)


def _cached(path, spec):
    # spec.cached (cache_from_source) for a "dir/name.py" path in the usual case, put
    # together directly; the general function when a prefix or -O changes the answer.
    head, sep, tail = path.rpartition("/")
    if (
        _CACHE_TAG is None
        or sys.pycache_prefix is not None
        or sys.flags.optimize
        or not tail.endswith(".py")
    ):
        return spec.cached
    return "%s%s__pycache__/%s.%s.pyc" % (head, sep, tail[:-3], _CACHE_TAG)


def _stamp(path):
    st = _os_stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _user_tb(tb):
    # Drop the runner's own frames so the traceback starts in the user's code.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def _exc_info(exc):
    import traceback  # only on errors: it costs start-up time otherwise

    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tb = "".join(traceback.format_exception(type(exc), exc, _user_tb(exc.__traceback__)))
    return message, tb


class Worker:
    def __init__(self, root, max_result):
        self.root = root
        self.root_prefix = os.path.join(root, "")
        self.max_result = max_result
        self.generators = {}  # path -> (stamp, module)
        self.kept = {}  # path -> (stamp, module), never purged (Import::Kept)
        self.helpers = {}  # file of a root-local module in sys.modules -> stamp
        self.seen_modules = 0

    def _is_local(self, path):
        # Code of the tree itself: not a virtualenv or other dot directory under it.
        if not (isinstance(path, str) and path.startswith(self.root_prefix)):
            return False
        parts = path[len(self.root_prefix) :].split(os.sep)[:-1]
        return not any(
            p.startswith(".") or p in ("site-packages", "dist-packages") for p in parts
        )

    def _load(self, path):
        # The module SourceFileLoader + spec_from_loader + module_from_spec +
        # exec_module give (the original's way), with the same attributes and values,
        # built directly: the generic steps were a third of a trivial generator's cost.
        # No cached .pyc is looked for: bytecode is never written.
        loader = _SourceFileLoader("mymodule", path)
        spec = _ModuleSpec("mymodule", loader, origin=path)
        spec.has_location = True
        module = _ModuleType("mymodule")
        attrs = module.__dict__
        attrs["__loader__"] = loader
        attrs["__package__"] = ""
        attrs["__spec__"] = spec
        attrs["__file__"] = path
        cached = _cached(path, spec)
        if cached is not None:  # as module_from_spec: no attribute without a cache path
            attrs["__cached__"] = cached
        exec(compile(_read(path), path, "exec", dont_inherit=True), attrs)
        return module

    def _track_helpers(self):
        # Remember every module imported from under the root, to notice edits.
        if len(sys.modules) == self.seen_modules:
            return
        for module in list(sys.modules.values()):
            f = getattr(module, "__file__", None)
            if f not in self.helpers and self._is_local(f):
                try:
                    self.helpers[f] = _stamp(f)
                except OSError:
                    self.helpers[f] = None
        self.seen_modules = len(sys.modules)

    def _helpers_changed(self):
        for f, old in self.helpers.items():
            try:
                if _stamp(f) != old:
                    return True
            except OSError:
                if old is not None:
                    return True
        return False

    def _purge(self):
        # Forget everything imported from the root, so the next import reads it anew.
        for name, module in list(sys.modules.items()):
            f = getattr(module, "__file__", None)
            if self._is_local(f):
                del sys.modules[name]
            elif getattr(module, "__path__", None) is not None and any(
                isinstance(p, str) and self._is_local(os.path.join(p, "")) for p in module.__path__
            ):
                del sys.modules[name]
        self.generators.clear()
        self.helpers.clear()
        self.seen_modules = 0
        importlib.invalidate_caches()

    def _module(self, path):
        if self.helpers and self._helpers_changed():
            self._purge()
        stamp = _stamp(path)
        cached = self.generators.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        importlib.invalidate_caches()
        module = self._load(path)
        self.generators[path] = (stamp, module)
        return module

    def _kept(self, path):
        # Imported once and kept while its file is unchanged: its state accumulates.
        stamp = _stamp(path)
        cached = self.kept.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        module = self._load(path)
        self.kept[path] = (stamp, module)
        return module

    def run(self, req):
        path = req["path"]
        # Set while the module is imported and called (unless a batch set them already
        # and no call changed them), then restored.
        previous = _set_env(req.get("env"))
        try:
            how = req.get("import")
            if how == "fresh":
                module = self._load(path)
            elif how == "kept":
                module = self._kept(path)
            else:
                module = self._module(path)
            return _function(module, req.get("functions") or ())(**req.get("params", {}))
        finally:
            _restore_env(previous)


def _set_env(env):
    """Sets `env`; returns what to restore: the earlier values of the names changed."""
    previous = {}
    for name, value in (env or {}).items():
        old = os.environ.get(name)
        if old != value:
            previous[name] = old
            os.environ[name] = value
    return previous


def _restore_env(previous):
    for name, old in previous.items():
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class _Reject(Exception):
    """A result or module that cannot be used, reported without a traceback."""


def _function(module, names):
    # The first of `names` the module defines; the last one is required.
    for name in names[:-1]:
        func = getattr(module, name, None)
        if func is not None:
            return func
    if not names:
        raise _Reject("the request names no function")
    name = names[-1]
    func = getattr(module, name, None)
    if func is None:
        raise _Reject("the module defines no %s(**params) function" % name)
    if not callable(func):
        raise _Reject("%s is not callable" % name)
    return func


def _encode(result, max_result):
    if result is None:
        raise _Reject("Generated result is None")
    try:
        body = _dumps_result(result)
    except (TypeError, ValueError, RecursionError) as e:
        raise _Reject(
            "the result of type %s cannot be converted to JSON: %s" % (type(result).__name__, e)
        )
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _Reject("the result holds text that is not valid Unicode: %s" % e)
    if len(data) > max_result:
        raise _Reject(
            "the result is %d bytes of JSON, more than the limit of %d" % (len(data), max_result)
        )
    return data


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = _os_write(fd, view)
        view = view[n:]


def _send(fd, parts):
    for part in parts:
        _write_all(fd, part)


# Results up to this size go out in one write with their reply line (one wake-up of
# the pool per reply, which matters for a batch of small generators); a bigger one is
# written on its own rather than copied after the line.
_JOIN_BELOW = 1 << 16


def _error(rid, index, kind, message, tb=None, recycle=False, secs=0.0):
    return (
        _dumps(
            {
                "id": rid,
                "index": index,
                "ok": False,
                "kind": kind,
                "message": message,
                "traceback": tb,
                "recycle": recycle,
                "secs": secs,
            }
        )
        + "\n"
    ).encode("utf-8")


def _watch_parent(ppid):
    # The pool set PR_SET_PDEATHSIG before exec, so the worker dies with it; it may have
    # died before that, though: then exit now.
    if os.getppid() != ppid:
        os._exit(0)


def _fork_copies(fd_triples):
    """Forks one copy of this worker per (stdin, stdout, stderr) triple of pipe fds that
    the pool passed: once the interpreter has started, a fork costs a small part of
    starting another one. Returns True in a copy, whose fds 0-2 are then its pipes."""
    copy = False
    for fds in fd_triples:
        try:
            pid = os.fork()
        except OSError:
            continue  # the pool sees this copy's pipes close and starts a worker itself
        if pid == 0:
            os.setpgid(0, 0)  # its own process group: the pool kills it alone
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            copy = True
            break
    for fds in fd_triples:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    return copy


def _lifeline(fd):
    # A copy is the first worker's child, not the pool's, so PR_SET_PDEATHSIG cannot tie
    # it to the pool: a thread waits for the request pipe to hang up (the pool is gone) and
    # kills the copy's process group, even while a generator runs. It only polls for
    # the hang-up, so it never takes a request and never holds the GIL while waiting.
    import _thread
    import select

    def watch():
        poller = select.poll()
        poller.register(fd, 0)
        while True:
            for _, event in poller.poll():
                if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    os.kill(0, 9)

    _thread.start_new_thread(watch, ())


def main(stream):
    # Read before fd 0 moves: `stream` may hold the line in its buffer already.
    settings = _loads(stream.readline())
    root = settings["root"]
    _watch_parent(settings["ppid"])
    copy = _fork_copies(settings.get("copies") or [])
    mem = settings.get("memory_limit") or 0
    if mem > 0:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            mem = min(mem, hard)
        resource.setrlimit(resource.RLIMIT_AS, (mem, hard))
    try:
        import faulthandler

        faulthandler.enable()  # a segfault leaves a Python traceback in the log
    except Exception:
        pass
    sys.dont_write_bytecode = True  # see docs/generators.md: edits within one second
    # `python -c` puts the current directory first on sys.path: drop it. The root goes
    # last, so a generator named like a module (json.py, requests.py) shadows nothing.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    sys.path.append(root)
    _SHIM_SOURCES.update(settings.get("shims") or {})
    if _SHIM_SOURCES:
        sys.meta_path.append(_ShimFinder)
    sys.argv = [settings.get("name") or "python-pool"]

    # Move the protocol off fds 0 and 1 (the copies are not inherited by children).
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.dup(1)
    if copy:
        _lifeline(proto_in.fileno())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass

    worker = Worker(root, settings["max_result"])
    hello = {
        "ready": True,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }
    _write_all(proto_out, (_dumps(hello) + "\n").encode("utf-8"))

    while True:
        line = proto_in.readline()
        if not line:
            return  # the pool closed the channel: exit quietly
        req = _loads(line)
        rid = req.get("id")
        batch = req.get("batch")
        if batch is None:
            _send(proto_out, _answer(worker, rid, req, None)[0])
            continue
        last = len(batch) - 1
        # Set for the whole batch (each run still sees it, see Worker.run).
        previous = _set_env(req.get("env"))
        item = {"functions": req.get("functions"), "import": req.get("import"), "env": req.get("env")}
        try:
            for index, path in enumerate(batch):
                item["path"] = path
                out, recycle = _answer(worker, rid, item, index, index < last)
                _send(proto_out, out)
                if recycle:
                    break  # the pool replaces this worker and runs the rest elsewhere
        finally:
            _restore_env(previous)


def _announce(worker, path):
    # Tells the pool, in the output stream itself, which module prints what follows
    # ("" once a call or batch is done): the reply comes on another pipe, so only an
    # in-band mark attributes output exactly (a batch runs many generators between
    # two replies).
    rel = path[len(worker.root_prefix) :] if path.startswith(worker.root_prefix) else path
    try:
        _write_all(2, OUTPUT_MARK + rel.encode("utf-8", "surrogateescape") + b"\n")
    except OSError:
        pass


def _answer(worker, rid, req, index, more=False):
    """Runs one request; returns the reply (the byte strings to write, in order) and
    whether the worker must go.

    `more`: another generator of the batch follows at once, so its start mark also
    ends this one's output (one write, and one wake-up of the pool, less per file)."""
    _announce(worker, req.get("path") or "")
    started = time.perf_counter()
    recycle = False
    try:
        data = _encode(worker.run(req), worker.max_result)
        secs = time.perf_counter() - started
        if index is None:
            line = b'{"id":%d,"ok":true,"secs":%r,"size":%d}\n' % (rid, secs, len(data))
        else:
            line = b'{"id":%d,"index":%d,"ok":true,"secs":%r,"size":%d}\n' % (
                rid,
                index,
                secs,
                len(data),
            )
        out = (line + data,) if len(data) < _JOIN_BELOW else (line, data)
    except _Reject as e:
        out = (_error(rid, index, "exception", str(e), None, False, time.perf_counter() - started),)
    except MemoryError as e:
        message, tb = _exc_info(e)
        recycle = True
        out = (_error(rid, index, "exception", message or "MemoryError", tb, True),)
    except BaseException as e:  # includes SystemExit and KeyboardInterrupt from user code
        message, tb = _exc_info(e)
        out = (_error(rid, index, "exception", message, tb, False, time.perf_counter() - started),)
    finally:
        worker._track_helpers()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if recycle or not more:
            _announce(worker, "")
    return out, recycle
