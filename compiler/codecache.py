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

Regular expressions likewise: the ~50-90 patterns the imports compile (PyYAML's reader and resolver, platform,
textwrap, ours) were ~90 M instructions of parsing and compiling in Python, every run. On CPython 3.11 (its re compile, checked by checksum), for
the command, re's compile step (re._compiler.compile, which re.compile calls when its own cache misses) is the
cache's: a pattern's program (the list of opcodes, flags, groups) is kept in the same file and handed to _sre.compile
as re hands it, so the Pattern is the same (patterns compare their text, flags and program). A pattern whose parse
warned is never kept, so it warns every run as before.

The file is read whole (one marshal.loads) and written again only by a run that compiled something new; past
MAX_ENTRIES entries a save keeps only what its own run used. `current()` is the cache of the command running:
compiler/loader.py keeps the command's loaded spec through it (`document`, `keep_document`: a file per spec name;
the first load of some bytes keeps only their key, the second the document: an edit-then-run loop writes 32 bytes).

Measured (callgrind, whole process, bytecode and cache warm): `validate` 1.195 -> 1.061 G instructions with the
code kept, 0.971 G with the regexes too; `generate --region us-east-1` 1.720 -> 1.571 -> 1.447 G. Trust: as
compiler/model/prebuilt.py's pickle, the files are only ever read from the user's own cache directory, written there
by platformc itself.
"""

from __future__ import annotations

import builtins
import contextlib
import marshal
import os
import sys

from compiler.cache import write_atomic

FORMAT = 1
MAX_ENTRIES = 10_000  # past this, a save keeps only what its own run used (the file never grows without end)
_SHADOWED = (("dataclasses", "exec"), ("typing", "compile"), ("collections", "eval"))
_CODE = type((lambda: None).__code__)

# re.compile's programs (below): Cache.regex re-does re._compiler.compile's steps, so it stands in only for the
# compile whose code it was written from (CPython 3.11's, the same code from 3.11.2 to 3.11.7, by the checksum of
# its bytecode, constants and names). Another Python's compile may take other steps: its patterns are compiled as
# usual and never kept.
_KNOWN_REGEX_COMPILERS = frozenset((3933883388,))
_REGEX = False
if sys.version_info[:2] == (3, 11):
    import re._compiler as _sre_compiler
    _code = _sre_compiler.compile.__code__
    import zlib
    _REGEX = zlib.crc32(_code.co_code + repr((_code.co_consts, _code.co_names)).encode()) in _KNOWN_REGEX_COMPILERS
if _REGEX:
    import _sre
    import re._parser as _sre_parser
    _STANDARD_REGEX = _sre_compiler.compile


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
        self.patterns: set = set()  # the (pattern, flags) of the regexes this process compiled
        self.added = 0
        self.saved = 0  # `added` when last written
        self.documents: dict = {}  # path -> bytes: loaded specs kept, written by save()
        try:
            with open(file, "rb") as f:
                codes = marshal.loads(f.read())  # one read: marshal.load reads a file piece by piece (~13 M instructions)
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

    def regex(self, pattern, flags=0):
        """re's compile of a pattern (re._compiler.compile, which re.compile calls when its own cache misses): the
        program is kept, not the Pattern, and handed to _sre.compile as re._compiler.compile hands it. A miss runs
        re._compiler.compile's own steps, at its depth of the stack (a warning's stacklevel counts from here); a
        pattern whose parse warned is never kept (a kept one could not warn again), nor a DEBUG one (it prints)."""
        if not isinstance(pattern, (str, bytes)):  # a parsed pattern (re.Scanner's): nothing to parse or keep
            return _STANDARD_REGEX(pattern, flags)
        keep = type(pattern) in (str, bytes) and type(flags) is int and not flags & _sre_compiler.SRE_FLAG_DEBUG
        key = (pattern, flags)
        kept = self.codes.get(key) if keep else None
        if keep:
            self.patterns.add(key)
        if kept is not None:
            try:
                return _sre.compile(pattern, *marshal.loads(kept))
            except Exception:  # a damaged entry: compiled again and kept anew
                del self.codes[key]
        import warnings
        warned, warn = [], warnings.warn

        def counted(message, category=None, stacklevel=1, *args, **kw):
            warned.append(message)
            return warn(message, category, stacklevel + 1, *args, **kw)
        warnings.warn = counted
        try:
            p = _sre_parser.parse(pattern, flags)
        finally:
            warnings.warn = warn
        code = _sre_compiler._code(p, flags)
        if flags & _sre_compiler.SRE_FLAG_DEBUG:
            print()
            _sre_compiler.dis(code)
        groupindex = p.state.groupdict
        indexgroup = [None] * p.state.groups
        for k, i in groupindex.items():
            indexgroup[i] = k
        program = (flags | p.state.flags, code, p.state.groups - 1, groupindex, tuple(indexgroup))
        if keep and not warned:  # the opcodes are int subclasses: kept as ints
            self.codes[key] = marshal.dumps((program[0], list(map(int, code)), *program[2:]))
            self.added += 1
        return _sre.compile(pattern, *program)

    def document(self, name: str, key: bytes) -> tuple[str, object]:
        """What compiler/loader.py kept for the spec `name` when its bytes and the loader were `key`: ("kept", the
        value), ("seen", None) when the last run loaded the same but kept only the key, else ("new", None)."""
        path = self._document_path(name)
        try:
            if path in self.documents:  # kept by this process, not written yet
                data = self.documents[path]
                head, rest = data[:len(key)], data[len(key):]
            else:
                with open(path, "rb") as f:
                    head = f.read(len(key))  # the key first: a spec edited since costs a few bytes, not the file
                    rest = f.read() if head == key else b""
            if head != key:
                return "new", None
            return ("kept", marshal.loads(rest)) if rest else ("seen", None)
        except Exception:  # noqa: BLE001 - missing, damaged: load as usual
            return "new", None

    def keep_document(self, name: str, key: bytes, value=None) -> None:
        """One file per spec name, of its last load (a spec edited again replaces it): the key, and the value when
        given. Written by save(), with the code (a value marshal cannot write is not kept)."""
        try:
            self.documents[self._document_path(name)] = key if value is None else key + marshal.dumps(value)
        except ValueError:
            pass

    def _document_path(self, name: str) -> str:
        import hashlib
        digest = hashlib.sha256(os.path.abspath(name).encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return os.path.join(os.path.dirname(self.file), f"spec-{digest}.marshal")

    def save(self) -> None:
        """Write what this run kept: the loaded specs, and the code file again when this run compiled anything new
        (each atomically: a temp file renamed over it; a failure is ignored)."""
        documents, self.documents = self.documents, {}
        for path, data in documents.items():
            write_atomic(path, data)
        if self.added == self.saved:
            return
        self.saved = self.added  # a later block using this cache again writes only when it adds more
        codes = self.codes
        if len(codes) > MAX_ENTRIES:
            codes = {k: v for k, v in codes.items() if k in self.loaded or k in self.patterns}
        try:
            data = marshal.dumps(codes)
        except ValueError:
            return
        write_atomic(self.file, data)


_ACTIVE: list = []  # the caches installed now, the innermost last


def current() -> Cache | None:
    """The cache of the command running (compiler/cli.py main installs one), else None."""
    return _ACTIVE[-1] if _ACTIVE else None


def kept(name: str, key: bytes, make):
    """make()'s value for the file `name` whose bytes (and reader) are `key`: read from the cache when a run before
    kept it, else made. The first run on a key keeps only the key and the second the value (Cache.document), so a
    file edited before every run costs a few bytes written, not its value. Outside a command, make() alone."""
    cache = current()
    if cache is None:
        return make()
    state, value = cache.document(name, key)
    if state == "kept":
        return value
    value = make()
    cache.keep_document(name, key, value if state == "seen" else None)
    return value


@contextlib.contextmanager
def installed(file: str | None = None, cache: Cache | None = None, save: bool = True):
    """For the block: dataclasses' exec, typing's compile and collections' eval are the cache's; the file is read
    first (or `cache`, one read before, is used again) and, with `save`, written after (when it gained anything;
    compiler/cli.py saves at the process's exit instead, after the command). A module that already has a global of
    that name (another tool's stand-in) is left alone."""
    cache = cache or Cache(file or path())
    shadowed = []
    for module_name, name in _SHADOWED:
        module = sys.modules.get(module_name) or __import__(module_name)
        if name not in vars(module):
            setattr(module, name, getattr(cache, name))
            shadowed.append((module, name))
    regex = _REGEX and _sre_compiler.compile is _STANDARD_REGEX
    if regex:
        _sre_compiler.compile = cache.regex
    _ACTIVE.append(cache)
    try:
        yield cache
    finally:
        _ACTIVE.remove(cache)
        for module, name in shadowed:
            if vars(module).get(name) == getattr(cache, name):
                delattr(module, name)
        if regex and _sre_compiler.compile == cache.regex:
            _sre_compiler.compile = _STANDARD_REGEX
        if save:
            cache.save()
