"""Start-up: the code that the standard library compiles from text while platformc's imports run, kept between runs
as Python keeps bytecode.

`dataclasses` writes each dataclass's __init__ (and more) as Python source and compiles it, one exec per method;
`typing` compiles the text of every forward reference (pydantic-core's ~600 TypedDict annotations among them);
`collections.namedtuple` compiles its __new__. For `platformc validate` that parsing and compiling was ~15 % of the
process's instructions (issue 16), the same texts every run. `installed()` puts a caching `exec`/`compile`/`eval` in
those three modules' namespaces for the command (a module global shadows the builtin of that name for that module's
code alone): a text is compiled once, as the builtin would (same filename and mode, no inherited future flags: none
of the three modules has any), and its code object is kept in a file of platformc's cache directory under this
Python's exact version, read at the next start (marshal, as Python's own .pyc files; each code is unmarshalled when
first used, as a run uses only a part of the file). The code run is the code the builtin would have compiled
(tests/test_codecache.py holds each kept one to a fresh compile); a missing, unreadable or damaged file costs only
the compiles. Anything else (a code object, a text with flags) goes to the builtin.

Measured (callgrind, whole process, bytecode and cache warm): `validate` 1.195 -> 1.055 G instructions, `generate
--region us-east-1` 1.72 -> 1.56 G. Trust: as compiler/model/prebuilt.py's pickle, the file is only ever read from
the user's own cache directory, written there by platformc itself.
"""

from __future__ import annotations

import builtins
import contextlib
import marshal
import os
import sys

FORMAT = 1
MAX_ENTRIES = 20_000  # past this, nothing more is kept (a process that makes classes without end)
_SHADOWED = (("dataclasses", "exec"), ("typing", "compile"), ("collections", "eval"))
_CODE = type((lambda: None).__code__)


def path() -> str:
    """The file of this interpreter: its version string names the build too (date, compiler), so a file is only
    ever read by the Python that wrote it."""
    import zlib
    from compiler.cache import cache_dir
    tag = f"{sys.implementation.cache_tag}-{marshal.version}-{FORMAT}-{zlib.crc32(sys.version.encode()):08x}"
    return os.path.join(cache_dir(), f"code-{tag}.marshal")


class Cache:
    """The kept code objects, (text, filename, mode) -> code, and the three stand-ins that use them."""

    def __init__(self, file: str):
        self.file = file
        self.codes: dict = {}  # (text, filename, mode) -> the marshalled code, as kept in the file
        self.loaded: dict = {}  # (text, filename, mode) -> the code, in this process
        self.added = 0
        try:
            with open(file, "rb") as f:
                codes = marshal.load(f)
            if type(codes) is dict:
                self.codes = codes
        except Exception:  # missing, truncated, another format: compile as usual
            pass

    def code(self, source: str, filename: str, mode: str):
        key = (source, filename, mode)
        code = self.loaded.get(key)
        if code is None:
            kept = self.codes.get(key)
            if kept is not None:  # each kept code is read when first used: a run uses a part of the file
                try:
                    code = marshal.loads(kept)
                except Exception:
                    code = None
                if type(code) is not _CODE:  # a damaged entry: compiled again and kept anew
                    del self.codes[key]
                    code = None
            if code is None:
                code = builtins.compile(source, filename, mode, 0, True)  # nothing inherited: as the shadowed modules
                if len(self.codes) < MAX_ENTRIES:
                    self.codes[key] = marshal.dumps(code)
                    self.added += 1
            self.loaded[key] = code
        return code

    def exec(self, source, globals=None, locals=None, /):
        if globals is None:  # the caller's namespace, as the builtin takes it
            frame = sys._getframe(1)
            globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
        if isinstance(source, str):
            source = self.code(source, "<string>", "exec")
        return builtins.exec(source, globals, locals)

    def eval(self, source, globals=None, locals=None, /):
        if globals is None:
            frame = sys._getframe(1)
            globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
        if isinstance(source, str):
            source = self.code(source, "<string>", "eval")
        return builtins.eval(source, globals, locals)

    def compile(self, source, filename, mode, flags=0, dont_inherit=False, optimize=-1, **kw):
        if isinstance(source, str) and not flags and optimize == -1 and not kw:
            return self.code(source, filename, mode)
        return builtins.compile(source, filename, mode, flags, True, optimize, **kw)

    def save(self) -> None:
        """Write the file again when this run compiled anything new (atomically: a temp file renamed over it)."""
        if not self.added:
            return
        tmp = f"{self.file}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.file), exist_ok=True)
            with open(tmp, "wb") as f:
                marshal.dump(self.codes, f)
            os.replace(tmp, self.file)
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def installed(file: str | None = None):
    """For the block: dataclasses' exec, typing's compile and collections' eval are the cache's; the file is read
    first and written after (when it gained anything). A module that already has a global of that name (another
    tool's stand-in) is left alone."""
    cache = Cache(file or path())
    shadowed = []
    for module_name, name in _SHADOWED:
        module = sys.modules.get(module_name) or __import__(module_name)
        if name not in vars(module):
            setattr(module, name, getattr(cache, name))
            shadowed.append((module, name))
    try:
        yield cache
    finally:
        for module, name in shadowed:
            if vars(module).get(name) == getattr(cache, name):
                delattr(module, name)
        cache.save()
