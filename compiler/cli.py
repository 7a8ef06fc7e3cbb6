"""The `platformc` command line: a thin click layer over the library.

Exit codes: 0 success; 1 `--check` found generated files stale, or an internal error (a bug);
2 invalid spec or usage (every spec error is printed as FILE:LINE:COL: path: [CODE] message; an
unsafe or overlapping --out/--docs-out); 3 the write was refused, nothing changed (lock held, a file
platformc did not write in the way, a tampered manifest); 4 a file-system failure (read-only, full disk),
the write rolled back.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path

from compiler import codecache

# The command line's imports (click's: uuid, platform, inspect's tokenize) compile from the kept code and regexes too;
# main() uses the same cache for the command. What the process adds is written when it exits, after the command.
with codecache.installed(save=False) as _CODE:
    import click

    from compiler import __version__
    from compiler.errors import PlatformcError
atexit.register(_CODE.save)

DEFAULT_SPEC = "platform.yaml"
SCHEMA_PATH = Path("schemas/platform.schema.json")


def _print_warnings(compiled) -> None:
    for w in compiled.warnings:
        click.echo(w.format(), err=True)


def _read_spec(spec: str) -> bytes:
    """The spec's bytes, read once (a missing file is a positioned error, like the loader's)."""
    from compiler.errors import Diagnostic, SpecError
    try:
        with open(spec, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SpecError([Diagnostic(str(spec), 1, 1, "<root>", "L000",
                                    f"cannot read the spec: {exc.strerror}")]) from None


def _spec_lock(spec: str, lock: str | None):
    """The deployed-facts lock a command without --out checks against: --lock, else generated/platform.lock.json in
    the spec's directory when it exists (compiler/ir/deployed.py); None checks nothing."""
    from compiler.ir import deployed
    if lock and not Path(lock).is_file():
        raise click.UsageError(f"--lock {lock}: no such file")
    return deployed.read(lock if lock else deployed.default_path(Path(spec).parent / "generated"))


def _compile(spec: str, strict: bool, lock: str | None = None):
    from compiler.pipeline import compile_file
    compiled = compile_file(spec, strict=strict, lock=_spec_lock(spec, lock))
    _print_warnings(compiled)
    return compiled


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="platformc")
@click.option("--debug", is_flag=True, help="Show the traceback of internal errors.")
@click.pass_context
def cli(ctx, debug):
    """Compile platform.yaml into Terraform, Kubernetes, Kong, datastore and Ansible files."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--spec", "spec_option", type=click.Path(dir_okay=False), help="The spec (same as the argument; "
              "every other command takes --spec).")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--lock", type=click.Path(dir_okay=False), help="The deployed-facts lock to check against (default: "
              "generated/platform.lock.json beside the spec, when it exists; docs/lock.md).")
def validate(spec, spec_option, strict, lock):
    """Check SPEC (default platform.yaml) against the schema, the semantic rules and the deployed-facts lock."""
    if spec and spec_option and spec != spec_option:
        raise click.UsageError(f"two specs named: {spec} and --spec {spec_option}; name one")
    spec = spec or spec_option or DEFAULT_SPEC
    compiled = _compile(spec, strict, lock)
    click.echo(f"{spec}: valid ({len(compiled.plan.regions)} regions, {len(compiled.warnings)} warnings)")


@cli.command()
@click.argument("file", default=DEFAULT_SPEC, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def init(file, force):
    """Write a small valid spec to FILE (default platform.yaml) to start from: two AWS regions, two services."""
    from compiler.init import write_starter
    path = write_starter(file, force)
    spec = f" --spec {path}" if str(path) != DEFAULT_SPEC else ""
    click.echo(f"wrote {path}: edit the names marked `change`, then `platformc validate {path}` and "
               f"`platformc generate{spec}` (docs/getting-started.md walks through it)")


@cli.command()
@click.option("--spec", default=DEFAULT_SPEC, show_default=True, type=click.Path(dir_okay=False), help="The spec to compile.")
@click.option("--out", default="generated", show_default=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--docs-out", default="docs", show_default=True, type=click.Path(file_okay=False), help="Docs directory.")
@click.option("--region", "regions", multiple=True, help="Only this region (repeatable); global files are left alone.")
@click.option("--target", "target_names", multiple=True, help="Only this target (repeatable); docs are left alone.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and show what differs when the output is stale.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def generate(spec, out, docs_out, regions, target_names, check, strict):
    """Compile the spec into OUT (and the docs), or check that they are up to date."""
    import time

    from compiler import writer
    roots = {"generated": Path(out), "docs": Path(docs_out)}
    writer.check_roots({"--out": roots["generated"], "--docs-out": roots["docs"]}, spec)
    raw = _read_spec(spec)  # read once: these bytes are compiled and fingerprinted (a pipe works too)
    full_run = check or regions or target_names or os.environ.get("PLATFORMC_FULL") == "1"
    from compiler import noop
    sources = noop.sources_digest()  # before compiling: an edit during the run costs a recompile, never a freeze
    if not full_run:
        hit = noop.unchanged(spec, roots, strict, spec_bytes=raw, sources=sources)
        if hit is not None:
            count, warnings = hit
            for w in warnings:
                click.echo(w, err=True)
            click.echo(f"0 written, 0 removed, {count} unchanged (inputs unchanged since the last generate)")
            return
    from compiler.emit import check_regions, stream
    from compiler.pipeline import compile_text

    from compiler.ir import deployed
    started_ns = time.time_ns()
    # the deployed-facts lock this --out holds (committed with it): read here as an input to the rules; the lock
    # target writes the new one with the rest of the output (docs/lock.md)
    compiled = compile_text(raw, spec, strict=strict, lock=deployed.read(deployed.default_path(out)))
    _print_warnings(compiled)
    check_regions(compiled.plan, regions)
    jobs = stream(compiled.plan, target_names or None, regions or None, with_docs=not target_names)
    names = ["generated"] + ([] if target_names else ["docs"])
    # What a run may prune: a full run, every owner (a region removed from the spec is pruned); --target,
    # those targets' owners; --region, exactly the owners compiled (never another region's files). The
    # writer reads the scope once every job is in.
    owners: set = set()
    if regions:
        scope = owners
    elif target_names:
        compiled_targets: list = []  # the targets compiled, as owners name them (read once every job is in)

        def scope(owner):
            if not compiled_targets:
                compiled_targets.append(frozenset(o.split("/", 1)[0] for o in owners))
            return owner.split("/", 1)[0] in compiled_targets[0]
    else:
        scope = None
    # Each job's files are compared with the disk (and, for a write, staged) as they come, then released.
    if check:
        planners = {name: writer.Planner(roots[name], scope, mode="check") for name in names}
        for name, owner, files in jobs:
            owners.add(owner)
            planners[name].add(owner, files)
        report = []
        for name in names:
            report += writer.describe(planners[name].finish(), str(roots[name]))
        if report:
            click.echo("\n".join(report), err=True)
            click.echo("generated files are stale: run `make generate` (platformc generate) and commit the result", err=True)
            sys.exit(1)
        click.echo("generated files are up to date")
        return
    # One transaction over every root: all locked, planned and staged before any file is replaced.
    # The manifest records what the tree was compiled from (a full run; a partial one keeps a matching record).
    inputs = noop.run_inputs(spec, raw, compiled.plan.spec.sharding.registry_file, sources, started_ns)
    with writer.session([roots[name] for name in names], {roots[name]: roots[name] for name in names}):
        tx = writer.Transaction({name: roots[name] for name in names}, scope, inputs=inputs,
                                full=not (regions or target_names))
        for name, owner, files in jobs:
            owners.add(owner)
            tx.add(name, owner, files)
        plans = tx.commit()
    written = sum(len([p for p in plan.write if p != writer.MANIFEST]) for plan in plans.values())
    removed = sum(len(plan.remove) for plan in plans.values())
    unchanged = sum(plan.unchanged for plan in plans.values())
    if not full_run:
        registry = compiled.plan.spec.sharding.registry_file
        from compiler.registry import registry_path
        extra = [registry_path(spec, registry)] if registry else []
        noop.record(spec, roots, extra, [w.format() for w in compiled.warnings], spec_bytes=raw, plans=plans,
                    sources=sources, started_ns=started_ns)
    click.echo(f"{written} written, {removed} removed, {unchanged} unchanged")


@cli.command()
@click.option("--out", default=str(SCHEMA_PATH), show_default=True, type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True, help="Exit 1 if the file differs from the models.")
def schema(out, check):
    """Write the JSON Schema (2020-12) of platform.yaml."""
    from compiler.schema import schema_text
    from compiler.errors import FileSystemError
    from compiler.writer import write_file_atomic
    data = schema_text().encode("utf-8")
    path = Path(out)
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise FileSystemError(f"cannot read {out}: {exc.strerror}") from None
    if check:
        if current != data:
            click.echo(f"{out} is stale: run `platformc schema`", err=True)
            sys.exit(1)
        click.echo(f"{out} is up to date")
        return
    if current != data:
        write_file_atomic(path, data)  # a temp file renamed over it: never a truncated schema
    click.echo(f"wrote {out}")


@cli.command()
@click.option("--spec", default=DEFAULT_SPEC, show_default=True, type=click.Path(dir_okay=False))
@click.option("--out", default="docs", show_default=True, type=click.Path(file_okay=False))
def docs(spec, out):
    """Regenerate the Markdown docs only."""
    from compiler import writer
    from compiler.emit import emit
    root = Path(out)
    writer.check_roots({"--out": root}, spec)  # as generate: never /, home, the spec's directory or a git work tree
    compiled = _compile(spec, False)
    outputs, owners = emit(compiled.plan)
    with writer.locked(root):
        plan = writer.plan_write(root, outputs["docs"], {o for o in owners if o.startswith("docs/")})
        writer.apply(plan)
    click.echo(f"{len(plan.write)} docs written")


@cli.command()
@click.argument("region")
@click.option("--spec", default=DEFAULT_SPEC, show_default=True, type=click.Path(dir_okay=False))
def show(region, spec):
    """Print REGION's resolved settings, each value annotated with where it came from."""
    from compiler.emit import check_regions
    from compiler.show import show as render
    compiled = _compile(spec, False)
    check_regions(compiled.plan, [region])
    click.echo(render(compiled.plan.region(region)), nl=False)


@cli.command()
@click.argument("tree", default="generated", type=click.Path(file_okay=False))
@click.option("--region", "regions", multiple=True, help="Only this region (repeatable).")
def verify(tree, regions):
    """Prove every connection in TREE (a generated directory) is open and correctly addressed in every layer.

    Reads the files alone, never the spec: one line per broken link (file:line, the layer, the connection),
    then a summary; exit 1 when anything is broken."""
    from compiler.verify import VerifyError
    from compiler.verify import verify as run
    try:
        report = run(tree, regions or None)
    except VerifyError as exc:
        raise click.UsageError(str(exc))
    for b in report.broken:
        click.echo(f"{Path(tree) / b.file}:{b.line}: [{b.layer}] {b.connection}: {b.message}")
    click.echo(f"{report.summary()} in {report.seconds:.2f} s")
    sys.exit(1 if report.broken else 0)


@cli.command(name="diff")
@click.option("--spec", default=DEFAULT_SPEC, show_default=True, type=click.Path(dir_okay=False), help="The spec (working tree side).")
@click.option("--base", "base_ref", default="HEAD", show_default=True, help="Git ref to compare against (read with `git show`, no checkout).")
@click.option("--base-spec", type=click.Path(dir_okay=False, exists=True), help="Compare against this spec file instead of a git ref.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--affected", is_flag=True, help="Print only the affected deploy units, one per line.")
def diff_cmd(spec, base_ref, base_spec, fmt, affected):
    """What changes against BASE: files per region and target, the changes in words, risks, affected deploy units, cost."""
    import time

    from compiler import diff as d
    from compiler.pipeline import compile_file, compile_text
    started_ns, raw = time.time_ns(), _read_spec(spec)
    new = compile_text(raw, spec, lock=_spec_lock(spec, None))  # checked against, and placed by, the working lock
    _print_warnings(new)
    # Each side's generated files are read, not emitted, where a manifest proves them current: the base's from
    # its committed tree, the working tree's from its generated/ (after `make generate`, as in CI).
    old, old_outputs = (compile_file(base_spec), None) if base_spec else d.base_at_ref(base_ref, spec)
    new_outputs = d.working_outputs(spec, raw, new.plan.spec.sharding.registry_file, started_ns)
    report = d.diff(old, new, base_spec or base_ref, old_outputs, new_outputs)
    if affected:
        for unit in report.affected:
            click.echo(unit)
        return
    render = {"text": d.render_text, "markdown": d.render_markdown, "json": d.render_json}[fmt]
    click.echo(render(report), nl=False)


@cli.command()
@click.option("--spec", default=DEFAULT_SPEC, show_default=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
def cost(spec, fmt):
    """Monthly cost estimate per region and category (min -> max nodes), per location, beside the spec's budget.

    Prices: compiler/cost/prices.yaml (public list prices, each with its source and date), overridden by the
    spec's `cost.prices` (keys `cloud/item[/name]`, e.g. `aws/instance_hour/c6i.4xlarge`)."""
    import json as _json
    from compiler import cost as c
    est = c.estimate(_compile(spec, False).plan)
    if fmt == "json":
        click.echo(_json.dumps(c.to_json(est), indent=2))
    else:
        click.echo((c.render_markdown if fmt == "markdown" else c.render_text)(est), nl=False)


@cli.group()
def server():
    """A compile server for a fast edit loop: commands run in a fork of one process that has platformc imported.

    Once started, every `platformc` command of this user, installation and cache directory is run by it, with the
    same arguments, directory, environment and streams, and the same output and exit status; it saves the ~0.15 s
    a process spends importing. It refuses (the command then runs in its own process, as without a server) when
    platformc's sources, templates or libraries changed since it started, and then exits. PLATFORMC_SERVER=0 runs
    a command without it."""


@server.command(name="start")
@click.option("--idle", type=click.FloatRange(min=1), default=1800, show_default=True,
              help="Exit after this many seconds without a command.")
def server_start(idle):
    """Start the compile server (nothing to do when it runs already)."""
    from compiler import server as srv
    answer = srv.start(idle=idle)
    if not answer:
        raise click.ClickException("the compile server did not start (see server.log in its directory: "
                                   f"{srv.launch.server_dir()})")
    click.echo(f"platformc server: running, pid {answer['pid']}, socket {answer['socket']}")


@server.command(name="stop")
def server_stop():
    """Stop the compile server."""
    from compiler import server as srv
    click.echo("platformc server: stopped" if srv.stop() else "platformc server: not running")


@server.command(name="status")
def server_status():
    """Say whether the compile server runs (exit 0) or not (exit 1), and how many commands it ran."""
    from compiler import server as srv
    answer = srv.ask("status")
    if not answer:
        click.echo("platformc server: not running")
        sys.exit(1)
    click.echo(f"platformc server: running, pid {answer['pid']}, {answer['served']} commands, socket {answer['socket']}")


def _without_pydantic_plugins() -> None:
    """pydantic looks for plugins (the `pydantic` entry-point group) when it builds its first model: importing
    importlib.metadata (and email, zipfile, csv, socket with it) and scanning every installed distribution's
    metadata cost ~85 M instructions, 5 % of a whole `platformc validate`. platformc's models take no plugin, so
    the command's process gets a loader that finds none, as PYDANTIC_DISABLE_PLUGINS=__all__ would, without the
    import. Left alone when pydantic has loaded its plugins already (a caller that built models before main())."""
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        import types
        loader = types.ModuleType(name, "platformc: no pydantic plugins (compiler/cli.py _without_pydantic_plugins)")
        loader.get_plugins = lambda: ()
        sys.modules[name] = loader


def main(argv=None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    _without_pydantic_plugins()
    # One command per process, and nearly everything it allocates lives until it exits: the cyclic garbage
    # collector only re-scans the growing heap (the spec's models, the plan, the emitted text) and finds
    # nothing to free. Off for the command: compiling 120 regions took 0.41 s of CPU instead of 0.69-0.91 s,
    # with the same peak RSS (in-process, serial, this 2-core machine), and a forked child does not copy the
    # parent's pages just to mark them. Back on afterwards for callers that stay alive (tests call main()).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with codecache.installed(cache=_CODE, save=False):  # the imports' dataclasses, forward references, regexes
            cli.main(args=argv, prog_name="platformc", standalone_mode=False)
    except PlatformcError as exc:
        click.echo(str(exc), err=True)
        diagnostics = getattr(exc, "diagnostics", None)
        if diagnostics:  # a summary after the list: how many, and that nothing was written
            errors = sum(d.severity == "error" for d in diagnostics)
            warnings = len(diagnostics) - errors
            click.echo(f"{errors} error{'s' * (errors != 1)}" + (f", {warnings} warning{'s' * (warnings != 1)}" if warnings else "")
                       + ": the spec is invalid, nothing was written", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except SystemExit:
        raise
    except BaseException as exc:  # a bug: one line, or the traceback with --debug
        if debug:
            raise
        click.echo(f"platformc: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
    finally:
        if argv is None:
            # The command line's own process (the console script, `python -m compiler`), about to exit: what it
            # allocated is moved out of the collector's sight, so the interpreter's last collection at exit does
            # not walk it all to find nothing to free (issue 16: ~55 M instructions of a validate's ~1.37 G). A
            # caller that passes argv (the tests) keeps a collector that sees everything.
            gc.freeze()
        if gc_was_enabled:
            gc.enable()
