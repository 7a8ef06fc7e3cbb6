"""The `platformc` command's entry point: hand the command to a running compile server, else run it here.

A cold `platformc` process spends most of a small command importing (pydantic and the models, click, PyYAML,
Jinja2, the targets): ~0.15 s of the ~0.3 s of an edit-then-`--region` loop. `platformc server start` keeps one
process with all of that imported; this module, which imports only the standard library's light modules, asks
it to fork a child that runs the command with this process's arguments, working directory, environment, umask
and standard streams (the file descriptors themselves, passed over the socket), and exits with the child's exit
status. The child is a fresh fork of the same warm process every time: nothing one command does is seen by the
next.

Nothing here changes what a command does or writes. The server refuses, and the command runs here as it would
without one, whenever the server might not be this platformc: another package directory, interpreter or
Python; an environment variable read at import time that differs; platformc's sources, templates or libraries
changed since it started (it then exits). Only the user's own server is used: the socket lives in a directory
of the user's cache that only the user can enter, and both ends check the other's uid (SO_PEERCRED).
"""

from __future__ import annotations

import os
import sys

from compiler.cache import cache_dir  # os only: the launcher stays light

PROTOCOL = 1
IMPORT_TIME_ENV = ("PLATFORMC_YAML",)
"""Environment variables platformc reads when its modules are imported (compiler/render.py): a server imported
them once, so it serves only clients whose values are the same. The cache directory's variables need no entry:
a client finds the server in its own cache directory."""


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def identity() -> dict:
    """What a server must share with its client to run the client's command as the client would."""
    return {"protocol": PROTOCOL, "package": package_dir(), "executable": sys.executable, "version": sys.version}


def server_dir(env=None) -> str:
    return os.path.join(cache_dir(env), "server")


def socket_name() -> str:
    """One server per platformc installation and interpreter, in the cache directory (several checkouts share it)."""
    import zlib
    key = zlib.crc32("\0".join(str(v) for v in identity().values()).encode())
    return f"platformc-{os.getuid()}-{key:08x}.sock"


def private_dir(path: str) -> bool:
    """The directory is the user's own and nobody else may enter or write it: a socket found there is the user's."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    import stat
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def socket_path() -> str | None:
    """Where this user's server for this installation listens, when its directory is private to the user (a
    socket found there is the user's own); None when there is no such directory."""
    directory = server_dir()
    if not os.path.isdir(directory) or not private_dir(directory):
        return None
    return os.path.join(directory, socket_name())


def connect(path: str, timeout: float | None = None):
    """A socket connected to the server at `path` whose process is this user's; OSError otherwise."""
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(connectable(path))
        if peer_uid(sock) != os.getuid():
            raise PermissionError(f"{path}: not this user's server")
    except BaseException:
        sock.close()
        raise
    return sock


def connectable(path: str) -> str:
    """A name for the socket at `path` that fits AF_UNIX's 108 bytes: the path itself, or the path through an open
    descriptor of its directory (/proc/self/fd/N/name) when a deep cache directory makes it longer."""
    if len(os.fsencode(path)) < 100:
        return path
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}"  # the descriptor stays open for the process's life


def peer_uid(sock) -> int | None:
    import socket
    import struct
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


def send_json(sock, obj, fds=()) -> None:
    import array
    import json
    import socket
    data = json.dumps(obj).encode()
    payload = len(data).to_bytes(4, "big") + data
    if fds:
        sent = sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        payload = payload[sent:]
    sock.sendall(payload)


def recv_json(sock, with_fds: int = 0):
    """One length-prefixed JSON message (and up to `with_fds` descriptors sent with it); None at end of stream."""
    import array
    import json
    import socket
    fds = array.array("i")
    head, ancillary = b"", []
    if with_fds:
        head, ancillary, _flags, _addr = sock.recvmsg(4, socket.CMSG_SPACE(with_fds * fds.itemsize))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None
        head += chunk
    size, body = int.from_bytes(head, "big"), b""
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None
        body += chunk
    obj = json.loads(body)
    return (obj, list(fds)) if with_fds else obj


def _streams() -> list | None:
    """This process's stdin, stdout and stderr as the child should recreate them, or None when one is closed."""
    out = []
    for fd, stream in ((0, sys.stdin), (1, sys.stdout), (2, sys.stderr)):
        if stream is None:
            return None
        try:
            os.fstat(fd)
        except OSError:
            return None
        out.append([getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict"])
    return out


def via_server(argv: list[str]) -> int | None:
    """The command's exit status, run by the user's compile server; None when there is none to run it (or it
    refused before running anything), and the command must run here."""
    if os.environ.get("PLATFORMC_SERVER") == "0" or sys.platform != "linux":  # SO_PEERCRED
        return None
    path = socket_path()  # no directory, the common case, is decided before importing socket (~11 M instructions)
    if path is None or not os.path.exists(path):
        return None
    streams = _streams()
    if streams is None:
        return None
    forward = _Forward()
    try:
        sock = connect(path)
    except OSError:
        return _declined(None, forward)
    try:
        mask = os.umask(0o022)
        os.umask(mask)
        send_json(sock, {**identity(), "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": mask,
                         "streams": streams}, fds=[0, 1, 2])
        first = recv_json(sock)
    except OSError:
        return _declined(sock, forward)
    if not isinstance(first, dict) or "pid" not in first:
        return _declined(sock, forward)  # refused (another platformc, changed sources): nothing ran
    forward.to(int(first["pid"]))
    return _wait(sock, forward)


def _declined(sock, forward: _Forward) -> None:
    """No server runs the command: this process will, with its own signal handling (and a signal that came in
    the meantime delivered to it now)."""
    if sock is not None:
        sock.close()
    forward.restore()
    for signum in forward.pending:
        os.kill(os.getpid(), signum)
    return None


class _Forward:
    """Signals a terminal or a supervisor sends this process (Ctrl-C, a timeout's SIGTERM) go to the child that runs
    the command; one that comes before the child is known is passed on when it is."""
    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")

    def __init__(self):
        import signal
        self.pid, self.pending, self.sent = None, [], []
        self.saved = {getattr(signal, n): signal.signal(getattr(signal, n), self) for n in self.SIGNALS}

    def __call__(self, signum, _frame):
        if self.pid is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum):
        self.sent.append(signum)
        try:
            os.kill(self.pid, signum)
        except OSError:
            pass

    def to(self, pid: int) -> None:
        self.pid = pid
        for signum in self.pending:
            self._send(signum)

    def restore(self) -> None:
        import signal
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


def _wait(sock, forward: _Forward) -> int:
    """The child's exit status, once it has run the command with this process's streams. A child that a forwarded
    signal ended without a status ends this process by the same signal, as that signal would have without a server."""
    while True:
        try:
            done = recv_json(sock)
            break
        except InterruptedError:
            continue
        except OSError:
            done = None
            break
    sock.close()
    if isinstance(done, dict) and isinstance(done.get("exit"), int):
        return done["exit"]
    if forward.sent:
        forward.restore()
        os.kill(os.getpid(), forward.sent[-1])
    os.write(2, b"platformc: the compile server's process ended without an exit status "
                b"(`platformc server stop`, or PLATFORMC_SERVER=0, runs commands without it)\n")
    return 1


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] != "server":  # `platformc server ...` manages the server: always here
        status = via_server(argv)
        if status is not None:
            sys.stdout.flush()
            sys.exit(status)
    from compiler.cli import main as cold
    cold()
