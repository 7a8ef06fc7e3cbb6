"""Check generated Helm values against a chart's own values.yaml (../shared/reference/helm rules).

Every key path set must exist in the chart's defaults with the same kind (map / list / scalar),
except below:
  - a default of null (any value the template expects),
  - an empty map `{}` (annotations, labels, resources, ... : free-form),
  - a list (items are free-form objects),
  - the maps the reference README names as free-form although they ship defaults (FREE_FORM),
  - keys the chart documents only as commented-out examples (COMMENTED: each with the comment
    line that documents it, which the check requires to be present in values.yaml),
  - keys a template reads that values.yaml never mentions (TEMPLATE_READ: each with the template line).
Istio charts keep their defaults under `_internal_defaults_do_not_set`; kube-prometheus-stack's
subchart sections are checked against the subchart's values when the parent does not list a key.
"""

from __future__ import annotations

from pathlib import Path

import yaml

FREE_FORM = {
    "kong": {("env",), ("podAnnotations",)},  # podAnnotations: rendered with toYaml, whatever the keys
    "cluster-autoscaler": {("extraArgs",)},
    "opentelemetry-collector": {("config",), ("ports",)},  # ports: name -> port (values.schema.json patternProperties ".*")
    "istiod": {("meshConfig",)},
}

# chart -> {key path: a line of values.yaml that documents it as a commented-out example}
COMMENTED = {
    "kong": {
        ("topologySpreadConstraints",): "# topologySpreadConstraints: []",
        ("podDisruptionBudget", "maxUnavailable"): '# maxUnavailable: "50%"',
        ("serviceMonitor", "honorLabels"): "# honorLabels: false",
    },
    "opentelemetry-collector": {
        ("podDisruptionBudget", "minAvailable"): "#   minAvailable: 2",
    },
    "jaeger": {
        ("jaeger", "resources"): "  # resources:\n  #   limits:\n  #     cpu: 500m",
    },
}

# chart -> {key path: the template line, at the pinned chart's tag, that reads it}: keys the templates read although
# values.yaml neither sets nor mentions them. The reference keeps no templates, so the evidence is quoted here, read
# from the chart's repository at that tag; the list stays as short as the templates force it to be.
TEMPLATE_READ = {
    "jaeger": {
        # jaegertracing/helm-charts, tag jaeger-4.11.1, charts/jaeger/templates/jaeger/jaeger-deploy.yaml (else Recreate)
        ("jaeger", "strategy"): "{{- if .Values.jaeger.strategy }}",
    },
}

ISTIO = {"istio-base", "istiod", "istio-gateway"}


def load_defaults(reference: Path, chart: str, version: str):
    text = (reference / chart / version / "values.yaml").read_text()
    data = yaml.safe_load(text) or {}
    if chart in ISTIO:
        data = data["_internal_defaults_do_not_set"]
    return data, text


def _kind(v) -> str:
    return "map" if isinstance(v, dict) else "list" if isinstance(v, list) else "scalar"


def check(values: dict, chart: str, version: str, reference: Path, subcharts: dict[str, str] | None = None) -> list[str]:
    """Problems found (empty list = every key path is a real key of the chart)."""
    defaults, text = load_defaults(reference, chart, version)
    errors: list[str] = []
    commented = COMMENTED.get(chart, {})
    for path, evidence in commented.items():
        if evidence not in text:
            errors.append(f"{chart}: allow-list evidence for {'.'.join(path)} not found in values.yaml: {evidence!r}")
    commented = {**commented, **TEMPLATE_READ.get(chart, {})}
    sub = {}
    for name, rel in (subcharts or {}).items():
        sub[name] = yaml.safe_load((reference / rel / "values.yaml").read_text()) or {}

    def walk(value, default, path, free, commented_paths, label):
        if path in free:
            return
        if isinstance(default, dict) and not default and path:
            return  # empty map: free-form
        if not isinstance(value, dict):
            return
        if not isinstance(default, dict):
            errors.append(f"{label}: {'.'.join(path) or '<top>'} is a map, the chart's default is a {_kind(default)}")
            return
        for key, v in value.items():
            p = path + (key,)
            if not path and key in sub and label == chart:
                continue  # a subchart section: checked below
            if key not in default:
                if p in commented_paths:
                    continue
                errors.append(f"{label}: unknown key {'.'.join(p)}")
                continue
            d = default[key]
            if d is None:
                continue
            if _kind(d) != _kind(v):
                errors.append(f"{label}: {'.'.join(p)} is a {_kind(v)}, the chart's default is a {_kind(d)}")
                continue
            if isinstance(d, dict):
                walk(v, d, p, free, commented_paths, label)

    walk(values, defaults, (), FREE_FORM.get(chart, set()), commented, chart)
    for name, sub_defaults in sub.items():
        if name not in values:
            continue
        parent = defaults.get(name) or {}
        # Helm coalesces the parent's section over the subchart's defaults: a key path is the subchart's when
        # either lists it (the parent's `grafana.sidecar` names some keys, the subchart's `sidecar.resources` too)
        walk(values[name], helm_merge(sub_defaults, parent), (), set(), set(), f"{chart}.{name} (subchart)")
    return errors


def key_paths(values, path=()):
    """Every leaf key path of a values tree (for reports)."""
    if isinstance(values, dict):
        for k, v in values.items():
            yield from key_paths(v, path + (k,))
    else:
        yield path


def helm_merge(defaults, overrides):
    """Helm's coalescing of user values onto chart defaults: maps merge key by key, anything else
    replaces, null removes the key."""
    if not isinstance(defaults, dict) or not isinstance(overrides, dict):
        return overrides
    out = dict(defaults)
    for k, v in overrides.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = helm_merge(defaults.get(k), v)
    return out


def schema_errors(values: dict, chart: str, version: str, reference: Path) -> list[str] | None:
    """What the chart's values.schema.json says about the merged values (None: the chart has none).
    Helm validates the coalesced values at install, so the same is done here."""
    import json

    import jsonschema

    path = reference / chart / version / "values.schema.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    raw = yaml.safe_load((reference / chart / version / "values.yaml").read_text()) or {}
    merged = helm_merge(raw, values)
    # "http://json-schema.org/schema#" means "the latest draft" (Helm validates with it that way)
    latest = schema.get("$schema", "").rstrip("#").endswith("json-schema.org/schema")
    cls = jsonschema.Draft202012Validator if latest else jsonschema.validators.validator_for(schema)
    validator = cls(schema)
    return [f"{chart}: {'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message[:300]}"
            for e in validator.iter_errors(merged)]
