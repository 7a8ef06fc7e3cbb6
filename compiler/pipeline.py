"""load -> validate -> resolve, in one direction. Emitting and writing live in targets/ and writer.py."""

from __future__ import annotations

from collections import defaultdict
from compiler.records import dataclass

from pydantic import ValidationError

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


def _merge_regions(doc: Document, platform: Platform) -> tuple[dict, dict, dict]:
    raw = doc.data
    merged_settings, origins, provenance = {}, {}, {}
    errors: list[Diagnostic] = []
    top = ("global", ("settings",), raw["settings"])
    top_origin = layer_origin(*top)  # the same for every region: recorded once
    for name, region in platform.regions.items():
        layers = [top]
        if region.geo in platform.geos:
            layers.append((f"geo:{region.geo}", ("geos", region.geo, "settings"),
                           raw["geos"][region.geo].get("settings", {})))
        layers.append((f"region:{name}", ("regions", name, "settings"), raw["regions"][name].get("settings", {})))
        merged, origin = merge_layers(layers, top_origin)
        origins[name] = origin
        try:
            merged_settings[name] = RegionSettings.model_validate(merged)
        except ValidationError as exc:
            def locate(path, prefer_key, origin=origin):
                src = _source_of(origin, path)
                line, col = doc.pos(src, prefer_key=prefer_key)
                return doc.file, line, col, dotted(src)
            errors.extend(diagnostics_from(exc, RegionSettings, merged, locate))
        provenance[name] = {path: o.layer for path, o in origin.items()}
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


def compile_document(doc: Document, strict: bool = False, skip_rules: frozenset = frozenset()) -> Compiled:
    """skip_rules: rule codes not to run (`platformc diff` compiles a base spec without the rules added since)."""
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
    plan = resolve(platform, settings, provenance, doc.file, homes)
    if platform.cost.budget_split == "estimate":  # each region's budget: its part of the estimated floor (compiler/cost)
        from compiler.cost import split_by_estimate
        plan = split_by_estimate(plan)
    plan_findings = [(r, f) for r in rules if r.stage == "plan" for f in r.check(plan)]
    warnings = warnings + _apply(_position(doc, origins, plan_findings), strict)
    return Compiled(plan, sorted(set(warnings)), doc)


def compile_file(path: str, strict: bool = False, skip_rules: frozenset = frozenset()) -> Compiled:
    return compile_document(load_file(path), strict, skip_rules)


def compile_text(text: str | bytes, file: str = "platform.yaml", strict: bool = False,
                 skip_rules: frozenset = frozenset()) -> Compiled:
    raw = text.encode() if isinstance(text, str) else text
    return compile_document(load_text(raw, file), strict, skip_rules)
