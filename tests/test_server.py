"""The compile server (compiler/server.py, compiler/launch.py): a command it runs is the command run cold.

Each test starts its own server in a private cache directory and compares what a command does through it (files,
bytes, modes, stdout, stderr, exit status) with the same command run in its own process (PLATFORMC_SERVER=0).
The served count (`platformc server status`) tells which way a command went."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLATFORMC = [sys.executable, "-m", "compiler"]
TWO_REGION = REPO / "tests/cases/two-region/platform.yaml"

pytestmark = pytest.mark.skipif(not hasattr(__import__("socket"), "SO_PEERCRED"), reason="Linux only (SO_PEERCRED)")


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".platformc.lock"}


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory) -> Path:
    """A cache directory with the models' kept schemas and the templates' bytecode, copied into each test's own
    (what they hold is keyed by their inputs): a server in an empty one builds all of that first, ~10 s."""
    d = tmp_path_factory.mktemp("warm") / "cache"
    env = dict(os.environ, PLATFORMC_CACHE_DIR=str(d), PLATFORMC_SERVER="0")
    out = d.parent / "out"
    subprocess.run(PLATFORMC + ["generate", "--spec", str(TWO_REGION), "--out", str(out / "gen"), "--docs-out",
                                str(out / "docs")], env=env, check=True, capture_output=True, cwd=d.parent)
    return d


class Server:
    def __init__(self, tmp: Path, pythonpath: str = str(REPO), idle: float = 120, cache: Path | None = None):
        self.env = {k: v for k, v in os.environ.items() if k not in ("PLATFORMC_SERVER", "PLATFORMC_YAML")}
        self.env.update(PLATFORMC_CACHE_DIR=str(tmp / "cache"), PYTHONPATH=pythonpath)
        if cache is not None:
            shutil.copytree(cache, tmp / "cache", ignore=shutil.ignore_patterns("server", "noop-*"))
        self.tmp = tmp
        out = self.run("server", "start", "--idle", str(idle))
        assert out.returncode == 0, out.stderr
        self.pid = int(out.stdout.split("pid ")[1].split(",")[0])

    def run(self, *args, cwd=None, env=None, cold=False, **kw) -> subprocess.CompletedProcess:
        e = dict(self.env, **(env or {}))
        if cold:
            e["PLATFORMC_SERVER"] = "0"
        return subprocess.run(PLATFORMC + list(args), cwd=cwd or self.tmp, env=e, capture_output=True, text=True,
                              timeout=120, **kw)

    def served(self) -> int | None:
        out = self.run("server", "status")
        if out.returncode:
            return None
        return int(out.stdout.split(", ")[2].split()[0])

    def stop(self):
        self.run("server", "stop")
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)


@pytest.fixture
def server(tmp_path, warm_cache):
    shutil.copy(TWO_REGION, tmp_path / "platform.yaml")
    s = Server(tmp_path, cache=warm_cache)
    yield s
    s.stop()


def test_generate_through_the_server_is_the_cold_generate(server, tmp_path):
    before = server.served()
    warm = server.run("generate", "--out", "a/gen", "--docs-out", "a/docs")
    assert server.served() == before + 1  # this one went through the server ...
    cold = server.run("generate", "--out", "b/gen", "--docs-out", "b/docs", cold=True)
    assert server.served() == before + 1  # ... and this one did not
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert warm.returncode == 0 and "written" in warm.stdout
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a and a == b


def test_errors_exit_statuses_and_streams_are_the_cold_ones(server, tmp_path):
    spec = tmp_path / "platform.yaml"
    spec.write_text(spec.read_text().replace("geos:", "geos:\n  bogus_key: 1\ngeos_again:", 1))
    for args in (["validate"], ["generate"], ["generate", "--region", "nowhere"], ["frobnicate"], ["validate", "--help"]):
        before = server.served()
        warm, cold = server.run(*args), server.run(*args, cold=True)
        assert server.served() == before + 1
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr), args
    assert server.run("validate").returncode == 2
    assert "platform.yaml:" in server.run("validate").stderr
    assert not (tmp_path / "generated").exists()


def test_working_directory_umask_and_stdin_are_the_clients(server, tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(tmp_path / "platform.yaml", tmp_path / "sub" / "platform.yaml")
    for label, cold in (("w", False), ("c", True)):
        out = subprocess.run(["sh", "-c", f"umask 027; exec {' '.join(PLATFORMC)} generate --out {label}/gen "
                              f"--docs-out {label}/docs"], cwd=tmp_path / "sub", capture_output=True, text=True,
                             env=dict(server.env, **({"PLATFORMC_SERVER": "0"} if cold else {})), timeout=120)
        assert out.returncode == 0, out.stderr
    w, c = tree(tmp_path / "sub" / "w"), tree(tmp_path / "sub" / "c")
    assert w == c and all(mode & 0o027 == 0 for _b, mode in w.values())
    assert stat.S_IMODE((tmp_path / "sub" / "w" / "gen").stat().st_mode) & 0o027 == 0
    # stdin is the client's: `init -` is not a thing, but a command reading a pipe sees the client's pipe
    piped = server.run("validate", "/dev/stdin", input=(tmp_path / "platform.yaml").read_text())
    assert piped.returncode == 0 and "valid (2 regions" in piped.stdout


def test_an_import_time_variable_that_differs_is_refused(server):
    before = server.served()
    out = server.run("validate", env={"PLATFORMC_YAML": "pyyaml"})
    assert out.returncode == 0 and "valid" in out.stdout
    assert server.served() == before  # ran in its own process; the server still serves the others
    assert server.run("validate").returncode == 0 and server.served() == before + 1


def test_a_directory_others_can_enter_is_not_trusted(server, tmp_path):
    directory = tmp_path / "cache" / "server"
    os.chmod(directory, 0o755)
    try:
        before = server.served()  # status asks the server directly: the check is the client's
        assert before is None  # not even status trusts it
        assert server.run("validate").returncode == 0
    finally:
        os.chmod(directory, 0o700)
    assert server.served() == 0


def test_changed_sources_are_never_served_and_stop_the_server(tmp_path, warm_cache):
    src = tmp_path / "src"
    shutil.copytree(REPO / "compiler", src / "compiler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "templates", src / "templates")
    shutil.copy(TWO_REGION, tmp_path / "platform.yaml")
    time.sleep(1.1)  # the server takes its snapshot only once no source is younger than a second
    s = Server(tmp_path, pythonpath=str(src), cache=warm_cache)
    try:
        assert s.run("validate").returncode == 0 and s.served() == 1
        show = src / "compiler" / "show.py"
        show.write_text(show.read_text() + "\n# an edit\n")
        out = s.run("validate")
        assert out.returncode == 0 and "valid (2 regions" in out.stdout  # run cold, by the edited sources
        deadline = time.monotonic() + 10
        while s.served() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.served() is None  # the server exited
        assert not list((tmp_path / "cache" / "server").glob("*.sock"))
    finally:
        s.stop()


def test_another_platformc_is_refused(server, tmp_path):
    """A client of another package directory (a second checkout sharing the cache) gets its own socket name, and a
    request naming another package, even on this socket, is refused."""
    from compiler import launch, server as srv
    request = {**launch.identity(), "package": "/elsewhere/compiler"}
    state = srv._sources_state()
    assert srv._refusal(request, state, dict(os.environ)) == "another platformc (package)"
    assert srv._refusal({**launch.identity(), "env": dict(os.environ)}, state, dict(os.environ)) is None
    assert srv._refusal({**launch.identity(), "env": dict(os.environ)}, ((), ()), dict(os.environ)) == "stale"


def test_ctrl_c_reaches_the_command(server, tmp_path):
    scaled = tmp_path / "scaled"
    subprocess.run([sys.executable, str(REPO / "scripts/scale.py"), str(scaled), "--regions", "48",
                    "--spec", str(REPO / "platform.yaml")], check=True, capture_output=True)
    proc = subprocess.Popen(PLATFORMC + ["generate", "--spec", str(scaled / "platform.yaml"), "--out", "o/gen",
                                         "--docs-out", "o/docs"], cwd=tmp_path, env=dict(server.env, PLATFORMC_JOBS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.6)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "aborted" in err


def test_concurrent_clients(server, tmp_path):
    procs = [subprocess.Popen(PLATFORMC + ["generate", "--out", f"p{i}/gen", "--docs-out", f"p{i}/docs"], cwd=tmp_path,
                              env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    trees = [tree(tmp_path / f"p{i}") for i in range(4)]
    assert trees[0] and all(t == trees[0] for t in trees)


def test_idle_server_exits_and_removes_its_socket(tmp_path, warm_cache):
    s = Server(tmp_path, idle=1, cache=warm_cache)
    deadline = time.monotonic() + 15
    while s.served() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s.served() is None
    assert not list((tmp_path / "cache" / "server").glob("*.sock"))
    out = s.run("server", "status")
    assert out.returncode == 1 and "not running" in out.stdout
