"""compiler/render.py's bytecode cache: jinja2's FileSystemBytecodeCache reading each file in one piece (issue 16,
start-up) loads exactly the code jinja2's own Bucket loads, with the same checks, and templates render the same."""

from __future__ import annotations

import io

import jinja2
from jinja2.bccache import Bucket, bc_magic

from compiler import render


def _buckets(env, cache, names):
    for name in names:
        source, filename, _ = env.loader.get_source(env, name)
        yield name, source, filename, cache.get_bucket(env, name, filename, source)


TEMPLATES = {
    "a.j2": "{% for r in regions %}{{ r.name }}: {{ r.cidr | default('none') }}\n{% endfor %}",
    "b.j2": "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) }}{% if big %}{{ '%05d' % n }}{% endif %}\n" * 50,
    "c.j2": "{% include 'a.j2' %}{{ regions | length }}",
}


def test_the_whole_file_cache_loads_what_jinja_loads(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "c").mkdir()
    for name, text in TEMPLATES.items():
        (tmp_path / "t" / name).write_text(text)
    cache = render._whole_file_cache(jinja2)(str(tmp_path / "c"))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path / "t")), bytecode_cache=cache)
    plain = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path / "t")))
    names = sorted(TEMPLATES)
    context = {"regions": [{"name": "eu", "cidr": "10.0.0.0/16"}, {"name": "us"}], "big": True, "n": 42}
    for _ in range(2):  # compiles and writes the cache files, then reads them
        assert [env.get_template(n).render(context) for n in names] == [plain.get_template(n).render(context)
                                                                        for n in names]
        env.cache.clear()
    standard = jinja2.FileSystemBytecodeCache(str(tmp_path / "c"))
    for name, source, filename, bucket in _buckets(env, cache, names):
        theirs = standard.get_bucket(env, name, filename, source)
        assert bucket.code is not None and bucket.code == theirs.code, name
    # the checks: a changed source, a foreign file, a truncated code are each a miss, as in jinja2's Bucket
    name, source, filename, bucket = next(_buckets(env, cache, names[:1]))
    assert cache.get_bucket(env, name, filename, source + " ").code is None
    path = cache._get_cache_filename(bucket)
    data = open(path, "rb").read()
    for broken in (b"not jinja" + data, data[:-20]):
        open(path, "wb").write(broken)
        ours, theirs = cache.get_bucket(env, name, filename, source), Bucket(env, bucket.key, bucket.checksum)
        theirs.load_bytecode(io.BytesIO(broken))
        assert ours.code is None and theirs.code is None
    assert data.startswith(bc_magic)


def test_render_uses_it():
    assert type(render._bytecode_cache()).__name__ == "WholeFileBytecodeCache"
