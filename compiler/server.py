"""The compile server: one process with platformc imported, forking a child per command (compiler/launch.py).

`platformc server start` runs `python -m compiler.server` in its own session. It records the state of platformc's
sources and templates and the installed versions of the libraries that shape the output, imports every module a
command may use, and listens on a Unix socket in a directory of the user's cache that only the user can enter.
For each client it checks, before forking, that the client is this platformc (package directory, interpreter,
Python), that the environment read at import time is the same, and that the sources and libraries are unchanged;
a client that differs is refused (it then runs its command itself), and changed sources also stop the server, so
an edit to platformc is never served by the code from before it. The child takes the client's descriptors as
its stdin/stdout/stderr, its working directory, environment, umask and arguments, runs `compiler.cli.main`, and
reports its exit status. The server exits after `--idle` seconds without a client (default 30 minutes), on
`platformc server stop`, or on SIGTERM, removing its socket.
"""

from __future__ import annotations

import io
import os
import select
import signal
import socket
import sys
import time

from compiler import launch
from compiler.cache import cache_dir

IDLE_SECONDS = 1800
RACY_NS = 1_000_000_000  # a source changed this close to the snapshot might change again without a new stat


def _sources_state() -> tuple:
    """The state of every source and template file (noop._stats: path, size, mtime, ctime, inode, device), and the
    versions of the libraries that shape the output (and click's)."""
    from compiler import noop
    files = tuple(entry for root in noop.SOURCES for entry in noop._stats(root))
    return tuple(files), tuple(sorted(noop._versions(noop.LIBRARIES + ("click",)).items()))


def _snapshot() -> tuple:
    """The sources' state, taken when no file changed in the second before it: a file saved in the same clock
    tick as the snapshot could be saved again with the same stat (git's racy-timestamp rule)."""
    while True:
        now = time.time_ns()
        state = _sources_state()
        if all(max(entry[2], entry[3]) < now - RACY_NS for entry in state[0]):  # (parts, size, mtime, ctime, ...)
            return state
        time.sleep(0.2)


def _warm() -> None:
    """Import what any command uses, so that no child pays for it."""
    import importlib

    from compiler import cli
    cli._without_pydantic_plugins()
    for name in ("compiler.pipeline", "compiler.emit", "compiler.render", "compiler.docs", "compiler.writer",
                 "compiler.noop", "compiler.cost", "compiler.diff", "compiler.show", "compiler.schema",
                 "compiler.verify", "compiler.init", "jinja2"):
        importlib.import_module(name)
    from compiler import targets
    for name in targets.available():
        targets.load(name)
    _rehearse()


def _rehearse() -> None:
    """Compile and emit the starter spec (`platformc init`'s) in memory, writing nothing: the first use of each
    model's validator, template and format builds what every later use reuses (pydantic's validators from their
    kept schemas, the templates from their bytecode), and a child should find that done. What it leaves behind is
    caches keyed by their inputs; the templates and sources they were read from are in the snapshot every request
    checks, so a change to one stops the server instead of being served from a cache."""
    from compiler import emit, init, pipeline
    jobs = os.environ.get("PLATFORMC_JOBS")
    os.environ["PLATFORMC_JOBS"] = "1"
    try:
        compiled = pipeline.compile_text(init.starter_text())
        for _root, _owner, _files in emit.stream(compiled.plan):
            pass
    except Exception as exc:  # noqa: BLE001 - only speed is at stake: the children build what is missing
        print(f"platformc server: the rehearsal failed ({type(exc).__name__}: {exc}); serving without it", flush=True)
    finally:
        if jobs is None:
            os.environ.pop("PLATFORMC_JOBS")
        else:
            os.environ["PLATFORMC_JOBS"] = jobs


def _refusal(request: dict, state: tuple, env_at_start: dict) -> str | None:
    """Why this server must not run the request, or None."""
    if not isinstance(request, dict):
        return "malformed request"
    for key, value in launch.identity().items():
        if request.get(key) != value:
            return f"another platformc ({key})"
    env = request.get("env")
    if not isinstance(env, dict) or cache_dir(env) != cache_dir(env_at_start):
        return "another cache directory"
    if any(env.get(name) != env_at_start.get(name) for name in launch.IMPORT_TIME_ENV):
        return "another import-time environment"
    if _sources_state() != state:
        return "stale"
    return None


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Run the client's command in this forked process, as the client's own process would have; never returns."""
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)  # the server's own log is no business of the command's
        for fd in range(3, 256):
            if fd not in (conn.fileno(), devnull):
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.close(devnull)
        (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = request["streams"]
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), in_enc, in_err)
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), out_enc, out_err,
                                      line_buffering=os.isatty(1))
        sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), err_enc, err_err,
                                      line_buffering=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(int(request["umask"]))
        sys.argv = ["platformc", *request["argv"]]
        launch.send_json(conn, {"pid": os.getpid()})
        from compiler.cli import main
        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            code = 130
    except BaseException as exc:  # the server's own failure in the child: say so on the client's stderr
        try:
            os.write(2, f"platformc: compile server: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: the status still goes back
                pass
        try:
            launch.send_json(conn, {"exit": code})
        except OSError:
            pass
        os._exit(code)


def _bind(path: str) -> socket.socket:
    """Listen at `path`, or raise FileExistsError when a server already answers there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(launch.connectable(path))
        raise FileExistsError(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    finally:
        probe.close()
    try:
        os.unlink(path)  # a socket left by a server that was killed
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(launch.connectable(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    return listener


def serve(idle: float = IDLE_SECONDS) -> int:
    directory = launch.server_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        print(f"platformc server: cannot make {directory} private: {exc.strerror}", file=sys.stderr)
        return 2
    if not launch.private_dir(directory):
        print(f"platformc server: {directory} is not private to this user", file=sys.stderr)
        return 2
    state = _snapshot()  # before the imports: an edit made while they run is seen by the first request
    _warm()
    env_at_start = dict(os.environ)
    path = os.path.join(directory, launch.socket_name())
    try:
        listener = _bind(path)
    except FileExistsError:
        print(f"platformc server: already running ({path})", file=sys.stderr)
        return 0
    bound = os.stat(path).st_ino
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: stopping.append("SIGINT"))
    signal.signal(signal.SIGCHLD, lambda *_: _reap())  # a finished command is reaped at once, not at the next tick
    served, last = 0, time.monotonic()
    print(f"platformc server: listening on {path} (pid {os.getpid()})", flush=True)
    try:
        while not stopping:
            _reap()
            if time.monotonic() - last > idle:
                print("platformc server: idle, exiting", flush=True)
                break
            ready, _, _ = select.select([listener], [], [], min(1.0, idle))
            if not ready:
                continue
            conn, _ = listener.accept()
            with conn:
                if launch.peer_uid(conn) != os.getuid():
                    continue
                conn.settimeout(10)
                try:
                    got = launch.recv_json(conn, with_fds=3)
                except (OSError, ValueError):
                    continue
                if got is None:
                    continue
                request, fds = got
                op = request.get("op") if isinstance(request, dict) else None
                if op is not None:
                    for fd in fds:
                        os.close(fd)
                    if _sources_state() != state:  # `status` says "not running" of a server no command may use
                        launch.send_json(conn, {"refused": "stale"})
                        print("platformc server: platformc's sources changed, exiting", flush=True)
                        break
                    launch.send_json(conn, {"pid": os.getpid(), "served": served, "socket": path})
                    if op == "stop":
                        stopping.append("stop")
                    continue
                reason = _refusal(request, state, env_at_start) if len(fds) == 3 else "no standard streams"
                if reason is not None:
                    for fd in fds:
                        os.close(fd)
                    launch.send_json(conn, {"refused": reason})
                    if reason == "stale":
                        print("platformc server: platformc's sources changed, exiting", flush=True)
                        break
                    continue
                conn.settimeout(None)
                last = time.monotonic()  # a command, not `status`/`stop`, keeps the server from idling out
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    _child(conn, request, fds)
                for fd in fds:
                    os.close(fd)
                served += 1
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino == bound:  # still ours: a server started after a stale exit keeps its own
                os.unlink(path)
        except OSError:
            pass
    return 0


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def ask(op: str) -> dict | None:
    """The running server's answer to `status` or `stop`, or None when none answers."""
    path = launch.socket_path()
    if path is None or not os.path.exists(path):
        return None
    try:
        with launch.connect(path, timeout=5) as sock:
            launch.send_json(sock, {"op": op})
            answer = launch.recv_json(sock)
    except (OSError, ValueError):
        return None
    if isinstance(answer, dict) and "pid" in answer:
        return answer
    if isinstance(answer, dict) and answer.get("refused") == "stale":  # it is exiting: let it remove its socket
        deadline = time.monotonic() + 5
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
    return None


def start(wait: float = 20.0, idle: float = IDLE_SECONDS) -> dict | None:
    """Start a server in its own session (its output in the server directory's log) and wait until it answers."""
    import subprocess
    running = ask("status")
    if running:
        return running
    directory = launch.server_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    log = open(os.path.join(directory, "server.log"), "ab")
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "compiler.server", "--idle", str(idle)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                cwd="/", env={k: v for k, v in os.environ.items() if k != "PLATFORMC_SERVER"})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answer = ask("status")
        if answer:
            return answer
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def stop(wait: float = 10.0) -> bool:
    """Stop the running server; True when one was running."""
    answer = ask("stop")
    if not answer:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and os.path.exists(answer["socket"]):
        time.sleep(0.05)
    return True


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(prog="python -m compiler.server")
    ap.add_argument("--idle", type=float, default=IDLE_SECONDS, help="exit after this many seconds without a client")
    sys.exit(serve(ap.parse_args().idle))
