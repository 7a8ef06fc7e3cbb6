"""`platformc show REGION`: the resolved settings as YAML, each value annotated with its origin."""

from __future__ import annotations

import yaml

from compiler.ir import RegionPlan


def _scalar(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("\n...").removesuffix("...").strip()


def _origin(prov, path) -> str:
    # Only an exact entry counts: a parent mapping set in a layer does not set its unset children.
    # An empty provenance map marks the derived section.
    return prov.get(path, "default") if prov else "derived"


def _lines(value, path: tuple, prov, indent: int, out: list) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for k, v in value.items():
            p = path + (k,)
            if isinstance(v, (dict, list)) and v and not _flat_list(v):
                out.append(f"{pad}{k}:")
                _lines(v, p, prov, indent + 1, out)
            else:
                out.append(f"{pad}{k}: {_scalar(v)}  # {_origin(prov, p)}")
    else:  # a list of mappings
        for i, item in enumerate(value):
            p = path + (i,)
            if isinstance(item, dict):
                sub: list = []
                _lines(item, p, prov, indent + 1, sub)
                sub[0] = f"{pad}- " + sub[0].lstrip()
                out.extend(sub)
            else:
                out.append(f"{pad}- {_scalar(item)}  # {_origin(prov, p)}")


def _flat_list(v) -> bool:
    return isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)


def show(region: RegionPlan) -> str:
    data = region.settings.model_dump(mode="json")
    out = [f"# {region.name}: resolved settings; each value says where it came from",
           "# (default = the schema's default, global = `settings`, geo:<g> / region:<r> = an override)",
           f"region: {region.name}", f"geo: {region.geo}", f"cloud: {region.cloud}",
           f"cloud_region: {region.cloud_region}", f"traffic_share: {region.traffic_share:g}",
           f"dr_partner: {region.dr_partner}", "settings:"]
    _lines(data, (), region.provenance, 1, out)
    out.append("derived:  # computed by the resolver from the values above")
    _lines(_derived(region), (), {}, 1, out)
    return "\n".join(out) + "\n"


def _derived(r: RegionPlan) -> dict:
    c = r.connections
    return {
        "zones": [{"name": z.name, "private": z.private_cidr, "public": z.public_cidr} for z in r.zones],
        "internal_domain": r.internal_domain,
        "backup_url": r.backup_url,
        "shards": [f"{s.database}: franchise ids {s.first_id}-{s.last_id}" for s in r.shards],
        "connections": {"client_at_max_replicas": c.client_connections, "max_client_conn": c.max_client_conn,
                        "default_pool_size": c.default_pool_size, "server_connections": c.server_connections,
                        "postgres_usable": c.postgres_available},
        "capacity": {p.name: f"cpu {p.demand_cpu_millicores / 1000:g}/{p.cpu_millicores / 1000:g} cores, "
                             f"memory {p.demand_memory_mib / 1024:g}/{p.memory_mib / 1024:g} GiB, gpus {p.demand_gpus}/{p.gpus}"
                     for p in r.capacity},
        "hosts": [f"{h.name} ({h.group}, {h.zone})" for h in r.hosts],
        "monthly_budget": dict(r.monthly_budget),
    }
