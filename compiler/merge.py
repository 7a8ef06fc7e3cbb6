"""The layering rule: global `settings`, then the geo's, then the region's.

Mappings merge key by key; anything else (scalars, lists) in a later layer replaces the value
below it whole, and so does a mapping that changes its `type` (a rollout strategy). The merge keeps, for every path of the merged tree, the layer that set it and the
path in the spec file it came from, so that errors point into the file and `platformc show` can
say where each value came from.
"""

from __future__ import annotations

from collections import ChainMap

from compiler.records import dataclass


@dataclass(frozen=True)
class Origin:
    """Where a merged value came from: the layer that set it, its path in the spec file."""

    layer: str  # "global", "geo:<name>" or "region:<name>"
    source: tuple  # path of the value in the spec file


def _record(value, path: tuple, source: tuple, layer: str, origin: dict) -> None:
    origin[path] = Origin(layer, source)
    if isinstance(value, dict):
        for k, v in value.items():
            _record(v, path + (k,), source + (k,), layer, origin)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _record(v, path + (i,), source + (i,), layer, origin)


def _lay(base: dict, over: dict, path: tuple, source: tuple, layer: str, origin: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(value, dict) and isinstance(below, dict) and value.get("type", below.get("type")) == below.get("type"):
            # (a mapping that changes its `type`, e.g. a rollout from canary to rolling, replaces the one below whole:
            # the lower layer's canary weights mean nothing to a rolling update)
            origin.setdefault(path + (key,), Origin(layer, source + (key,)))
            out[key] = _lay(below, value, path + (key,), source + (key,), layer, origin)
        else:
            out[key] = value
            _record(value, path + (key,), source + (key,), layer, origin)
    return out


def layer_origin(label: str, source: tuple, data: dict) -> dict:
    """`{path: Origin}` of a layer laid first, as merge_layers records it. The global layer's is the same for every
    region: the pipeline records it once and hands it to each region's merge (issue 16: recording it again for every
    region was two thirds of merging)."""
    origin: dict = {}
    _record(data, (), source, label, origin)
    return origin


def merge_layers(layers: list[tuple[str, tuple, dict]], first: dict | None = None) -> tuple[dict, dict]:
    """Lay `(label, source_path, mapping)` layers over each other, first to last. `first`: layer_origin() of the
    first layer, when the caller has it already (copied, never changed).

    Returns the merged mapping and `{merged path: Origin}` for every node in it (given `first`, a ChainMap whose
    first map holds what the later layers set: at 120 regions, copying the global layer's ~700 entries per region
    was 4 MiB held until the compile's end).
    """
    merged: dict = {}
    origin: dict = {}
    for label, source, data in layers:
        if not origin:
            if first is not None:  # the first layer's map shared under the region's own entries, not copied
                origin = ChainMap({}, first)
            else:
                _record(data, (), source, label, origin)
            merged = data
        else:
            merged = _lay(merged, data, (), source, label, origin)
    return merged, origin
