"""The Ansible target: inventories per region, and the roles and playbooks (once) under generated/ansible/.

    ansible/inventories/<region>/hosts.yml           groups and hosts (names, fqdn, zone) from the IR
    ansible/inventories/<region>/group_vars/*.yml    the region's resolved settings, per role
    ansible/roles/<role>/{defaults,vars,tasks,handlers,templates,files,meta}/
    ansible/site.yml, ansible/<concern>.yml          one playbook per concern, site.yml imports them
    ansible/ansible.cfg, requirements.yml, README.md

The roles deploy the data-tier target's files (generated/datastores/<region>/) as they are: one
source for every configuration file. YAML is built as data and dumped; the role templates Ansible
renders on the hosts are static files copied verbatim from templates/ansible/static/.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.postgres_sizing import sizing, standby_memory_parameters
from compiler.resolve import promoted_budget, promoted_databases
from compiler.ir.dr_serving import designated_leader, promoted_routing_file
from compiler.ir.data_access import ca_sources
from compiler.ir.names import DATA_HOST_LOGIN_USER, PGBOUNCER_READ_ONLY_SUFFIX
from compiler.ir.postgres_ha import standby_hba_file
from compiler.ir.wal_archive import REPLICATION_DELAY, archive_url, promoted_archive_url, standby_archive_region
from compiler.render import banner, dump_yaml, render
from compiler.targets.ansible import inventory as inventory
from compiler.targets.ansible import site as site
from compiler.targets.ansible.role import Role
from compiler.targets.ansible.roles_base import SSH_MAX_AUTH_TRIES, backups, common, node_exporter
from compiler.targets.ansible.roles_data import pgbouncer, postgresql
from compiler.targets.ansible.roles_exporters import postgres_exporter, redis_exporter
from compiler.targets.ansible.roles_patroni import data_disk, etcd, patroni
from compiler.targets.ansible.roles_redis import redis
from compiler.targets.ansible.roles_search import elasticsearch
from compiler.targets.ansible.roles_tls import tls

NAME = "ansible"
ROOT = "ansible"
ROLE_BUILDERS = (common, node_exporter, tls, data_disk, etcd, postgresql, patroni, postgres_exporter, pgbouncer, redis,
                 redis_exporter, elasticsearch, backups)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#!{}"} | {"\n": " ", "\r": " "})


def md(text) -> str:
    """Free text inside Markdown prose or a table cell: every character Markdown reads as syntax escaped."""
    return str(text).translate(_MD_SPECIAL)


FILTERS = {"md": md}


def _spec(plan: PlatformPlan) -> str:
    """The spec's file name, for the do-not-edit banners."""
    return plan.spec_file.rsplit("/", 1)[-1] if plan.spec_file else "platform.yaml"


def _yaml(plan: PlatformPlan, data) -> str:
    return dump_yaml(data, header=site.yaml_header(_spec(plan)))


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    base = f"{ROOT}/inventories/{region.name}"
    out = {f"{base}/hosts.yml": _yaml(plan, inventory.hosts_yml(region))}
    for stem, variables in inventory.group_vars(plan, region).items():
        if variables:
            out[f"{base}/group_vars/{stem}.yml"] = _yaml(plan, variables)
    return out


def _role_files(plan: PlatformPlan, role: Role) -> dict[str, str]:
    base = f"{ROOT}/roles/{role.name}"
    out = {f"{base}/defaults/main.yml": _yaml(plan, role.defaults), f"{base}/meta/main.yml": _yaml(plan, role.meta())}
    if role.vars:
        out[f"{base}/vars/main.yml"] = _yaml(plan, role.vars)
    for stem, tasks in role.tasks.items():
        out[f"{base}/tasks/{stem}.yml"] = _yaml(plan, tasks)
    if role.handlers:
        out[f"{base}/handlers/main.yml"] = _yaml(plan, role.handlers)
    return out


def emit_global(plan: PlatformPlan) -> dict[str, str]:
    spec = _spec(plan)
    out: dict[str, str] = {}
    roles = [build() for build in ROLE_BUILDERS]
    for role in roles:
        out.update(_role_files(plan, role))
    for rel, text in site.static_files(spec):
        out[f"{ROOT}/{rel}"] = text
    for pb in site.PLAYBOOKS:
        out[f"{ROOT}/{pb.file}"] = _yaml(plan, site.playbook_data(pb))
    out[f"{ROOT}/site.yml"] = _yaml(plan, site.site_data())
    out[f"{ROOT}/ansible.cfg"] = site.ansible_cfg(spec)
    out[f"{ROOT}/.yamllint"] = _yaml(plan, site.yamllint_data())
    collections = inventory.collections_needed(plan)
    out[f"{ROOT}/requirements.yml"] = _yaml(plan, site.requirements_data(collections))
    md_banner = banner("<!--", spec).rstrip("\n") + " -->"
    out[f"{ROOT}/README.md"] = render("ansible", "README.md.j2", filters=FILTERS, md_banner=md_banner, plan=plan,
                                      roles=roles, playbooks=site.PLAYBOOKS, collections=sorted(collections),
                                      python=site.COLLECTION_PYTHON,
                                      env_secrets=_env_secrets(plan), max_auth_tries=SSH_MAX_AUTH_TRIES,
                                      host_patterns=host_patterns(plan),
                                      oslogin_regions=[r.name for r in oslogin_regions(plan)],
                                      oslogin_patterns=[f"*.{r.internal_domain}" for r in oslogin_regions(plan)])
    return dict(sorted(out.items()))


def host_patterns(plan: PlatformPlan) -> list[str]:
    """~/.ssh/config Host patterns that cover every inventory host and bastion: the regions' internal domains
    (<region>.internal.<domain>) with the region label as a wildcard."""
    return sorted({"*." + r.internal_domain.split(".", 1)[1] for r in plan.regions})


def oslogin_regions(plan: PlatformPlan) -> list:
    """The regions whose hosts log in with the operator's own OS Login account (no key pair user to name: GCP)."""
    return [r for r in plan.regions if r.hosts and r.cloud not in DATA_HOST_LOGIN_USER]


def _env_secrets(plan: PlatformPlan) -> list[str]:
    """Environment variables the controller must export (the spec's `env:` references)."""
    return sorted(ref[4:] for ref in inventory.secret_refs(plan) if ref.startswith("env:"))


def secret_uses(plan: PlatformPlan, region: RegionPlan) -> list:
    """The references the region's inventory looks up (the region page's Secret references)."""
    return inventory.secret_uses(plan, region)


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    from compiler.targets.ansible.roles_patroni import DRILL, ETCD_HOUSEKEEPING
    partner = plan.region(region.dr_partner)
    standby = next((s for s in getattr(partner.postgres_ha, "standbys", ()) if s.of_region == region.name), None)
    dr = plan.spec.disaster_recovery
    archive = archive_url(region, region.name)
    # the archive the standby replays (and a rebuild could): the copy replicated into the partner's bucket, if any
    standby_archive = archive_url(standby_archive_region(partner, region), region.name)
    memory = standby_memory_parameters(partner, region) if standby else None
    promoted = promoted_archive_url(partner, region) if standby else None
    own = sizing(region).shared_buffers_mb if standby else 0
    return render("ansible", "docs_region.md.j2", filters=FILTERS, region=region, archive=archive,
                  ca_sources=ca_sources(plan, region),
                  standby_archive=standby_archive, standby_memory=memory,
                  replication_delay=REPLICATION_DELAY[region.cloud] if standby_archive != archive else None,
                  own_shared_buffers=f"{own // 1024}GB" if own % 1024 == 0 else f"{own}MB",
                  promoted_archive=promoted or "nowhere (this region archives no WAL)",
                  groups=[(g, region.hosts_in(g)) for g in (*inventory.DATA_GROUPS, "bastion")],
                  playbooks=site.PLAYBOOKS, ha=region.postgres_ha, standby=standby, drill=DRILL,
                  etcd=ETCD_HOUSEKEEPING,
                  standby_fqdns=[h.fqdn for h in partner.hosts if standby and h.name in standby.hosts],
                  standby_hba=f"generated/datastores/{partner.name}/{standby_hba_file(region.name)}",
                  read_only_suffix=PGBOUNCER_READ_ONLY_SUFFIX if region.settings.datastores.postgres.read_replicas else None,
                  promoted_lines=promoted_databases(region), promoted_pools=promoted_budget(region, partner),
                  designated=_designated(plan, region, partner, standby),
                  failed_over=plan.serving_region(region.name) != region.name,
                  edge_out=_edge_out(plan, region), caches=_caches(region, partner),
                  rpo=dr.rpo_minutes, rto=dr.rto_minutes, edge_routing=_edge_routing(plan), fence=_fence(plan, region),
                  es_users=_es_users(region), es_managed=region.settings.datastores.elasticsearch.deployment == "managed"
                  and any("elasticsearch" in s.uses for s in region.services), es_grants=_es_grants(region))


def _designated(plan: PlatformPlan, region: RegionPlan, partner: RegionPlan, standby) -> dict | None:
    """The runbook's steps 3 and 4 (DR serving, compiler/ir/dr_serving.py): the promoted cluster's designated leader,
    the PgBouncer the routing table sends the region's shards to once it is failed over, and the promoted copy's
    routing script."""
    if standby is None:
        return None
    return {"name": standby.hosts[0], "fqdn": designated_leader(standby, partner.hosts),
            "pgbouncer": f"pgbouncer.{partner.internal_domain}:{partner.settings.datastores.pgbouncer.port}",
            "routing_file": promoted_routing_file(region.name)}


def _edge_out(plan: PlatformPlan, region: RegionPlan) -> dict:
    """What the global root does to keep a failed-over region out of the edge's weighted origin (DR serving:
    compiler/targets/terraform/global_root.py), and what the fail-back does, said as the runbook's steps 2, 4 and 5
    name them."""
    from compiler.ir.edge import edge_cloud
    domain = plan.spec.organization.domain
    return {"aws": {"out": f"gives its Route 53 record `origin.{domain}` (set identifier `{region.name}`) weight 0",
                    "back": "gives its Route 53 record its weight back"},
            "gcp": {"out": f"gives its item of the Cloud DNS record set `origin.{domain}.` weight 0",
                    "back": "gives its item of the Cloud DNS record set its weight back"},
            "azure": {"out": f"disables its Front Door origin `{region.name}` in the origin group `regions`",
                      "back": "enables its Front Door origin again"}}[edge_cloud(plan.spec)]


def _caches(region: RegionPlan, partner: RegionPlan) -> dict:
    """The runbook on Redis and Elasticsearch in a region loss: which of the region's services use them (their key and
    index prefixes: compiler/ir/data_access.py), where the Redis snapshots are, and whether the partner's Kong takes the
    clients' tokens as this region's does (the same issuer and key)."""
    from compiler.ir.data_access import ES_INDEX_SEPARATOR
    ds = region.settings.datastores
    hourly = region.settings.backups.hourly
    g, pg = region.settings.gateway, partner.settings.gateway
    return {
        "redis": [s.name for s in region.services if "redis" in s.uses],
        "redis_managed": ds.redis.deployment == "managed",
        "redis_policy": ds.redis.maxmemory_policy,
        "redis_snapshots": region.backup_url if region.hosts_in("redis_cluster") else None,
        "redis_snapshots_copied": partner.backup_url if hourly.copy_to_dr_partner else None,
        "search": [(s.name, s.name + ES_INDEX_SEPARATOR + "*") for s in region.services if "elasticsearch" in s.uses],
        "search_managed": ds.elasticsearch.deployment == "managed",
        "jwt_issuer": g.jwt_issuer,
        "same_jwt": (g.jwt_issuer, g.jwt_public_key) == (pg.jwt_issuer, pg.jwt_public_key),
    }


def _es_grants(region: RegionPlan) -> list:
    """Managed search: (grant, its IAM role name) per service (compiler/ir/data_access.py SearchGrant)."""
    from compiler.ir.data_access import search_grants
    return [(g, region.identity(g.identity).name) for g in search_grants(region.data_access)]


def _es_users(region: RegionPlan) -> list:
    """The services' Elasticsearch users the elasticsearch role creates (compiler/ir/data_access.py)."""
    from compiler.ir.data_access import elasticsearch_users
    return list(elasticsearch_users(region.data_access)) if region.hosts_in("elasticsearch") else []


def _fence(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    """The runbook's step 2 (fence the lost region and keep it fenced): the boot-time guard's files and what it asks
    (the region's FENCE_LAYER connection, as the patroni role's drop-in dials it), and the names the cloud CLIs take
    to keep the region out of the edge's weighted origin and its PostgreSQL hosts stopped. None without a standby
    cluster of the region to fence against."""
    from compiler.ir.data_access import published_ca_ref
    from compiler.ir.edge import edge_cloud, global_name
    from compiler.ir.postgres_ha import FENCE_LAYER
    from compiler.targets.ansible import roles_patroni as rp
    from compiler.ir.names import cloud_dns_zone_name
    conns = region.through(FENCE_LAYER)
    if not conns or region.postgres_ha is None:
        return None
    (c,) = conns
    spec = plan.spec
    instance = rp.PATRONI_INSTANCE.replace("{{ postgresql_version }}", str(region.settings.datastores.postgres.version))
    hosts = [h for h in region.hosts if h.name in region.postgres_ha.members]
    zones: dict[str, list[str]] = {}
    for h in hosts:
        zones.setdefault(h.zone, []).append(h.name)
    edge = edge_cloud(spec)
    return {
        "unit": f"patroni@{instance}", "script": rp.FENCE,
        "dropin": f"/etc/systemd/system/patroni@{instance}.service.d/{rp.FENCE_DROPIN}",
        "fenced": rp.FENCED.replace(rp.PATRONI_INSTANCE, instance),
        "unfenced": rp.UNFENCED.replace(rp.PATRONI_INSTANCE, instance),
        "ca_file": rp.fence_ca_file(region.dr_partner) if published_ca_ref(plan.region(region.dr_partner)) else "",
        "members": [f"https://{h}:{c.dest_port}/primary" for h in c.dest.hosts],
        "hosts": [h.name for h in hosts], "zones": sorted(zones.items()),
        "account": spec.clouds[region.cloud].account,
        "edge": edge, "domain": spec.organization.domain,
        "edge_account": spec.clouds[edge].account,
        "global_name": global_name(spec), "dns_zone": cloud_dns_zone_name(spec.organization.domain),
    }


def _edge_routing(plan: PlatformPlan) -> dict | None:
    """Home-region routing at the edge (compiler/ir/home_routing.py), as the runbook's step 4 names it: what in the
    global root sends a failed-over region's franchises to its partner, and the name of its per-home target."""
    from compiler.ir.home_routing import edge_home_provider, edge_routes_homes
    if edge_routes_homes(plan.spec):
        return {"what": "CloudFront's viewer-request function", "target": "origin"}
    provider = edge_home_provider(plan.spec)  # Front Door / Cloud CDN
    if provider:
        return {"what": {"front_door": "Front Door's home rule", "cloud_cdn": "Cloud CDN's route rules"}[provider],
                "target": {"front_door": "origin group", "cloud_cdn": "backend service"}[provider]}
    return None
