"""load -> validate -> resolve, in one direction. Emitting and writing live in targets/ and writer.py."""

from __future__ import annotations

from collections import ChainMap, defaultdict
from types import MappingProxyType
from compiler.records import dataclass

from pydantic import BaseModel, ValidationError

from compiler.errors import Diagnostic, SpecError, dotted
from compiler.ir import PlatformPlan
from compiler.loader import Document, load_file, load_text
from compiler.merge import layer_origin, merge_layers
from compiler.model import Platform, RegionSettings
from compiler.resolve import resolve
from compiler.rules import RULES, Finding
from compiler.validate import diagnostics_from


@dataclass
class Compiled:
    """A compiled spec: the plan, the warnings, the loaded document."""

    plan: PlatformPlan
    warnings: list[Diagnostic]
    document: Document


def _source_of(origin: dict, path: tuple) -> tuple:
    """Spec-file path for a merged-settings path: nearest ancestor's source plus the rest."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in origin:
            return origin[path[:cut]].source + tuple(path[cut:])
    return ("settings",) + tuple(path)


def _validate_top(doc: Document) -> Platform:
    try:
        return Platform.model_validate(doc.data)
    except ValidationError as exc:
        def locate(path, prefer_key):
            line, col = doc.pos(path, prefer_key=prefer_key)
            return doc.file, line, col, dotted(path)
        raise SpecError(diagnostics_from(exc, Platform, doc.data, locate)) from None


_ABSENT = object()


def _share(value, raw, where: tuple, seen: dict):
    """`value`, validated from `raw` as field `where` (model class, field name[, "item"]), or the equal value an
    earlier region validated from the very same `raw` object.

    Layering copies only the mappings a geo or region overrides: every other part of a region's merged settings is
    the global layer's own object, the same for all regions (at 120 regions, 1,270 of 1,632 mappings). pydantic
    validates each region's settings into new models all the same, and those copies were the plan's second
    largest part (~8 MiB of 34 at 120 regions). A field's value depends on its input alone (the models are frozen;
    no validator reads a sibling or a context), so one validated value serves every region whose input is that
    object. A field left out (its default) is keyed by the field alone. The caller keeps every merged mapping
    alive until all regions are done, so an id is never reused for another input."""
    if raw is _ABSENT:  # the field's default (not descended into: a default factory may set its own values)
        return seen.setdefault((where, None), value)
    if not isinstance(raw, (dict, list)):
        return value  # made from a scalar: nothing to share
    key = (where, id(raw))
    if key in seen:
        return seen[key]
    seen[key] = value
    _share_inside(value, raw, where, seen)
    return value


def _share_inside(value, raw, where: tuple, seen: dict) -> None:
    """Replace the parts of a newly validated `value` by equal ones validated before from the same objects."""
    if isinstance(value, BaseModel):
        if not isinstance(raw, dict) or type(value).__pydantic_decorators__.model_validators:
            return  # a model made from something else, or whose validator may rewrite its input: left as it is
        fields = value.__dict__
        for name, field in type(value).model_fields.items():
            child = fields.get(name)
            if isinstance(child, (BaseModel, dict, list)):
                fields[name] = _share(child, raw.get(field.alias or name, _ABSENT), (type(value), name), seen)
    elif isinstance(value, dict) and isinstance(raw, dict):
        for k, child in value.items():
            if isinstance(child, (BaseModel, dict, list)) and k in raw:
                value[k] = _share(child, raw[k], where + ("item",), seen)
    elif isinstance(value, list) and isinstance(raw, list) and len(raw) == len(value):
        for i, child in enumerate(value):
            if isinstance(child, (BaseModel, dict, list)):
                value[i] = _share(child, raw[i], where + ("item",), seen)


def _merge_regions(doc: Document, platform: Platform) -> tuple[dict, dict, dict]:
    raw = doc.data
    merged_settings, origins, provenance = {}, {}, {}
    shared: dict = {}  # (field, id of its input) -> the value validated from it: see _share
    inputs: list = []  # each region's merged mapping, alive until the last region is validated (ids stay unique)
    errors: list[Diagnostic] = []
    top = ("global", ("settings",), raw["settings"])
    top_origin = layer_origin(*top)  # the same for every region: recorded once
    top_layers = MappingProxyType({path: o.layer for path, o in top_origin.items()})
    for name, region in platform.regions.items():
        layers = [top]
        if region.geo in platform.geos:
            layers.append((f"geo:{region.geo}", ("geos", region.geo, "settings"),
                           raw["geos"][region.geo].get("settings", {})))
        layers.append((f"region:{name}", ("regions", name, "settings"), raw["regions"][name].get("settings", {})))
        merged, origin = merge_layers(layers, top_origin)
        origins[name] = origin
        try:
            settings = RegionSettings.model_validate(merged)
            _share_inside(settings, merged, (RegionSettings,), shared)
            merged_settings[name] = settings
            inputs.append(merged)
        except ValidationError as exc:
            def locate(path, prefer_key, origin=origin):
                src = _source_of(origin, path)
                line, col = doc.pos(src, prefer_key=prefer_key)
                return doc.file, line, col, dotted(src)
            errors.extend(diagnostics_from(exc, RegionSettings, merged, locate))
        # `platformc show`'s map of who set each value: the entries this region's layers set, over the global
        # layer's, which is one map for every region (at 120 regions, 120 copies of it were 2.5 MiB of the plan)
        own = {path: o.layer for path, o in origin.maps[0].items()}  # what the geo's and region's layers set
        provenance[name] = MappingProxyType(ChainMap(own, top_layers)) if own else top_layers
    if errors:
        raise SpecError(errors)
    return merged_settings, origins, provenance


def _position(doc: Document, origins: dict, findings_by_rule) -> list[Diagnostic]:
    """Turn findings into diagnostics; one line per source position, naming the regions affected."""
    grouped: dict = defaultdict(list)
    for rule, f in findings_by_rule:
        src = _source_of(origins[f.region], f.path) if f.region else f.path
        grouped[(rule.code, rule.severity, src, f.message)].append(f.region)
    out = []
    for (code, severity, src, message), regions in grouped.items():
        regions = [r for r in regions if r]
        if regions:
            message = f"{message} (region {', '.join(sorted(set(regions)))})"
        line, col = doc.pos(src, prefer_key=True)  # a finding is about the field: point at its key
        out.append(Diagnostic(doc.file, line, col, dotted(src), code, message, severity))
    return out


def _apply(diags: list[Diagnostic], strict: bool) -> list[Diagnostic]:
    errors = [d for d in diags if d.severity == "error" or strict]
    if errors:
        if strict:  # under --strict a warning is an error: printed as one, and said so
            from dataclasses import replace
            diags = [d if d.severity == "error" else
                     replace(d, severity="error", message=f"{d.message} (a warning; an error under --strict)") for d in diags]
        raise SpecError(diags if strict else errors + [d for d in diags if d.severity == "warning"])
    return diags


def compile_document(doc: Document, strict: bool = False, skip_rules: frozenset = frozenset(), lock=None) -> Compiled:
    """skip_rules: rule codes not to run (`platformc diff` compiles a base spec without the rules added since).
    lock: the deployed-facts lock (compiler/ir/deployed.py read()), None to check nothing."""
    platform = _validate_top(doc)
    rules = [r for r in RULES if r.code not in skip_rules] if skip_rules else RULES
    spec_rules = [r for r in rules if r.stage == "spec"]
    # Rules that only need the top level run first: region settings layering needs geos to exist.
    early = _position(doc, {}, [(r, f) for r in spec_rules for f in r.check(platform, {}) if f.region is None])
    if any(d.severity == "error" for d in early):
        _apply(early, strict)
    settings, origins, provenance = _merge_regions(doc, platform)
    findings = [(r, f) for r in spec_rules for f in r.check(platform, settings)]
    warnings = _apply(_position(doc, origins, findings), strict)
    homes = None
    if platform.sharding.registry_file:
        from compiler import registry
        homes = registry.load(doc.file, doc, platform)
    plan = resolve(platform, settings, provenance, doc.file, homes, lock)
    if platform.cost.budget_split == "estimate":  # each region's budget: its part of the estimated floor (compiler/cost)
        from compiler.cost import split_by_estimate
        plan = split_by_estimate(plan)
    plan_findings = [(r, f) for r in rules if r.stage == "plan" for f in r.check(plan)]
    warnings = warnings + _apply(_position(doc, origins, plan_findings), strict)
    return Compiled(plan, sorted(set(warnings)), doc)


def compile_file(path: str, strict: bool = False, skip_rules: frozenset = frozenset(), lock=None) -> Compiled:
    return compile_document(load_file(path), strict, skip_rules, lock)


def compile_text(text: str | bytes, file: str = "platform.yaml", strict: bool = False,
                 skip_rules: frozenset = frozenset(), lock=None) -> Compiled:
    raw = text.encode() if isinstance(text, str) else text
    return compile_document(load_text(raw, file), strict, skip_rules, lock)
