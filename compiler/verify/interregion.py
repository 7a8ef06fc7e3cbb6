"""Verify checker: the paths that cross regions (compiler/ir/network.py), read back from the generated tree.

- `inter-region`: the connection's far end is another region of the tree (found by its addresses in that
  region's connections file); both regions' Terraform roots call the cloud's peering module for each other
  (peer_cidr covering the far end); the module routes to the peer's range from the private route tables
  (AWS; GCP and Azure peerings exchange subnet routes themselves); the private zone of the region that owns
  the name dialled is visible from the other region's network (AWS: zone association; GCP: a DNS peering zone;
  Azure: a private DNS zone link); on AWS the entering flow's port is open in the private subnets' network ACL
  from the far end's range.
- `cloud-firewall-egress`: the source hosts' firewall lets them out to the far end on the port (AWS: the data
  hosts' security group egress rules; GCP and Azure allow egress to peered networks by default: the check
  proves the module adds no deny).
- `kong-forward`: the region's Kong routing function forwards the home region's franchises to an upstream whose
  only target is the address and port dialled (the home's internal gateway); the home-region map it requires
  reaches the pods: the region's helmfile installs the global chart holding it before Kong, Kong's values mount
  its ConfigMap where the chart's lua_package_path finds the module and allow it in the sandbox, the map is the
  version the function names (a new map must roll the pods, which cache the module) and homes franchises in that
  region.
- `internal-gateway`: the home region's internal gateway exists with that name, listens on the port and admits
  the forwarding regions' Kong; it passes the requests on to the region's load balancer (AWS: an internal NLB
  whose target is the load balancer, which admits it) or to Kong (GCP: an internal proxy NLB over Kong's NEGs;
  Azure: the internal load balancer of Kong's LoadBalancer Service, at the address the private DNS record names,
  opened by the private subnets' NSG).
- `postgres-endpoint`: the PostgreSQL endpoint a connection dials (postgres., postgres-replicas., postgres-sync.) is
  one the owning region's root passes its data_hosts module, on the port dialled, checking Patroni's path for it over
  the members, and the module makes its load balancer, health check and record per endpoint. Azure: the endpoints are
  the frontends of one internal load balancer over one pool of the members' IP configurations, each rule delivering
  to a backend port of its own without Floating IP (compiler/ir/postgres_ha.py says why; the nftables layer proves
  the members redirect the port, the cloud-firewall layer that the NSG admits it).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from compiler.verify import Broken, Result
from compiler.verify.infra import Lst, Obj, _covered, _doc, _net, _Region, _resource, acl_misses

LAYERS = ("inter-region", "cloud-firewall-egress", "kong-forward", "internal-gateway", "postgres-endpoint")
# Connections dialling a PostgreSQL endpoint name (compiler/ir/postgres_ha.py): postgres.<internal domain>,
# postgres-replicas.<internal domain> and postgres-sync.<internal domain> (the DR partner's standby's source), the
# internal load balancers in front of Patroni's members; each checks its own Patroni REST path.
_ENDPOINT = re.compile(r"^(?P<name>postgres(-replicas|-sync)?)\.[a-z0-9.-]+\.internal\.")
_ENDPOINT_HEALTH = {"postgres": "/primary", "postgres-replicas": "/replica", "postgres-sync": "/sync"}
# What each cloud's data_hosts module must do with an endpoint: (resource type, name, attribute, value) all present.
# The load balancer (on Azure: its frontend, probe and rule) and its name are made once per entry of
# var.postgres_endpoints (for_each): an endpoint the root passes is then one the module creates, and one it does not
# pass (data_hosts.postgres_endpoints) has none.
_PER_ENDPOINT = "var.postgres_endpoints"
_ENDPOINT_RESOURCES = {
    "aws": [("aws_lb", "postgres", "for_each", _PER_ENDPOINT), ("aws_lb", "postgres", "internal", True),
            ("aws_lb_target_group", "postgres", "for_each", _PER_ENDPOINT),
            ("aws_lb_listener", "postgres", "for_each", _PER_ENDPOINT), ("aws_lb_listener", "postgres", "port", "each.value.port"),
            ("aws_route53_record", "postgres", "for_each", _PER_ENDPOINT),
            ("aws_route53_record", "postgres", "name", "each.value.fqdn"),
            ("aws_lb_target_group_attachment", "postgres", "target_id", "aws_instance.host[each.value.host].id")],
    "gcp": [("google_compute_region_health_check", "postgres", "for_each", _PER_ENDPOINT),
            ("google_compute_region_backend_service", "postgres", "for_each", _PER_ENDPOINT),
            ("google_compute_forwarding_rule", "postgres", "for_each", _PER_ENDPOINT),
            ("google_compute_forwarding_rule", "postgres", "load_balancing_scheme", "INTERNAL"),
            ("google_compute_forwarding_rule", "postgres", "allow_global_access", True),
            ("google_dns_record_set", "postgres", "for_each", _PER_ENDPOINT),
            ("google_dns_record_set", "postgres", "name", "${each.value.fqdn}.")],
    # Azure: one load balancer, a frontend, probe and rule per endpoint (_azure_endpoint checks the rest)
    "azure": [("azurerm_lb_rule", "postgres", "for_each", _PER_ENDPOINT),
              ("azurerm_lb_rule", "postgres", "frontend_ip_configuration_name", "each.key"),
              ("azurerm_lb_rule", "postgres", "frontend_port", "each.value.port"),
              ("azurerm_lb_rule", "postgres", "backend_port", "each.value.backend_port"),
              ("azurerm_lb_rule", "postgres", "probe_id", "azurerm_lb_probe.postgres[each.key].id"),
              ("azurerm_lb_probe", "postgres", "for_each", _PER_ENDPOINT),
              ("azurerm_lb_probe", "postgres", "request_path", "each.value.health_path"),
              ("azurerm_lb_probe", "postgres", "port", "each.value.health_port"),
              ("azurerm_private_dns_a_record", "postgres", "for_each", _PER_ENDPOINT),
              ("azurerm_private_dns_a_record", "postgres", "name",
               'trimsuffix(each.value.fqdn, ".${var.internal_domain}")'),
              ("azurerm_network_interface_backend_address_pool_association", "postgres", "ip_configuration_name", "primary")],
}
# AWS names a load balancer and a target group within 32 characters, each endpoint's by a short suffix: two endpoints
# given one name collide, and the second is never created (a two-way `leader ? "rw" : "ro"` gave the third the
# replicas' name).
_AWS_NAMED = ("aws_lb", "aws_lb_target_group")
_LOCAL_BY_KEY = re.compile(r"local\.(?P<map>[A-Za-z_][A-Za-z0-9_]*)\[each\.key\]")
_KEY_TERNARY = re.compile(r'each\.key\s*==\s*"(?P<k>[^"]*)"\s*\?\s*"(?P<a>[^"]*)"\s*:\s*"(?P<b>[^"]*)"')
_HEALTH = {"aws": ("aws_lb_target_group", "postgres", "health_check", "path"),
           "gcp": ("google_compute_region_health_check", "postgres", "https_health_check", "request_path")}
CONNS = "connections/{}.json"


def _ranges(info: dict) -> list[str]:
    a = info.get("addressing") or {}
    out = list(a.get("node_cidrs") or []) + list(a.get("public_cidrs") or []) + list(a.get("pod_source_cidrs") or [])
    if a.get("pod_cidr"):
        out.append(a["pod_cidr"])
    return out


def _overlaps(cidrs, ranges) -> bool:
    nets = [n for n in (_net(r) for r in ranges) if n is not None]
    return any(_net(c) is not None and any(_net(c).overlaps(n) for n in nets) for c in cidrs)


def _region_of(tree, here: str, cidrs) -> str | None:
    """The first other region of the tree whose ranges `cidrs` overlaps. Every inter-region connection of every region
    asks, each time going through up to all the other regions' ranges: answered once per tree and question (the
    reference tree asks 112 times, 68 distinct questions)."""
    memo = tree.__dict__.setdefault("_region_of", {})
    key = (here, tuple(cidrs))
    if key not in memo:
        memo[key] = next((other for other in tree.regions
                          if other != here and _overlaps(cidrs, _ranges(tree.region_info(other)))), None)
    return memo[key]


def _peering(reg: _Region, cidrs) -> tuple[str, object] | None:
    """The root's peering module call whose peer_cidr covers every range of `cidrs`."""
    for name, m in reg.modules.items():
        src = m.get("source")
        if isinstance(src, str) and src.endswith("/peering") and isinstance(m.get("peer_cidr"), str):
            if not _covered(cidrs, [m.get("peer_cidr")]):
                return name, m
    return None


def _module_text(reg: _Region, name: str) -> tuple[str | None, str]:
    rel = reg.module_file(name)
    return rel, (reg.tree.text(rel) or "") if rel else ""


def _peering_module_does(reg: _Region, name: str) -> list[str]:
    """What the peering module's file is missing (routes, DNS sharing) on the region's cloud."""
    rel, text = _module_text(reg, name)
    flat = " ".join(text.split())
    need = {
        "aws": [("a route to var.peer_cidr through the peering",
                 r'resource "aws_route" "peer" \{.*?destination_cidr_block = var\.peer_cidr vpc_peering_connection_id ='),
                ("the private zone associated with the peer's VPC",
                 r'resource "aws_route53_zone_association" "peer" \{ zone_id = var\.internal_zone_id vpc_id = data\.aws_vpc\.peer\.id')],
        "gcp": [("a peering of this network with the peer's", r'resource "google_compute_network_peering" "this"'),
                ("a DNS peering zone for the peer's private names",
                 r'resource "google_dns_managed_zone" "peer" \{.*?peering_config')],
        "azure": [("a peering of this VNet with the peer's", r'resource "azurerm_virtual_network_peering" "this"'),
                  ("the private zone linked to the peer's VNet",
                   r'resource "azurerm_private_dns_zone_virtual_network_link" "peer"')],
    }.get(reg.cloud, [])
    return [what for what, pattern in need if not re.search(pattern, flat)]


def _check_link(tree, reg: _Region, region: str, c) -> list[Broken]:
    here = _ranges(tree.region_info(region))
    inbound = not _overlaps(c.source.cidrs, here)
    remote, local = (c.source.cidrs, c.dest.cidrs or here) if inbound else (c.dest.cidrs, c.source.cidrs)
    conns = CONNS.format(region)
    other = _region_of(tree, region, remote)
    if other is None:
        return [Broken(conns, c.line, "inter-region", c.id, f"no other region of the tree holds {', '.join(remote)}")]
    out = []
    far = _Region(tree, other)
    ends = [(reg, region, remote, other), (far, other, local, region)]
    calls = {}
    for r, name, cidrs, peer in ends:
        if r.doc is None:
            out.append(Broken(r.rel, 0, "inter-region", c.id, f"region {name} has no Terraform root"))
            continue
        found = _peering(r, cidrs)
        if found is None:
            out.append(Broken(r.rel, 1, "inter-region", c.id, f"no peering module call in {name} covers {peer}'s "
                              f"{', '.join(cidrs)}: the regions are not linked"))
            continue
        calls[name] = found
        mod, block = found
        for what in _peering_module_does(r, mod):
            out.append(Broken(r.module_file(mod) or r.rel, 1, "inter-region", c.id, f"the peering module lacks {what}"))
        if r.cloud == "aws" and not str(block.get("route_table_ids") or "").startswith("module.network."):
            out.append(Broken(r.rel, block.line, "inter-region", c.id,
                              f"module {mod} gets no private route tables (route_table_ids)"))
    # the name dialled lives in the dest region's private zone: that region's peering shares it with the other
    # (AWS and Azure: the owner's module attaches its zone to the other network; GCP: the other region's module
    # creates a DNS peering zone for the owner's domain)
    owner = region if inbound else other
    consumer = other if owner == region else region
    if owner in calls and reg.cloud in ("aws", "azure"):
        mod, block = calls[owner]
        r = reg if owner == region else far
        if not str(block.get("internal_zone_id") or block.get("private_dns_zone_name") or ""):
            out.append(Broken(r.rel, block.line, "inter-region", c.id,
                              f"module {mod} does not share {owner}'s private zone with {consumer}"))
    elif consumer in calls and reg.cloud == "gcp":
        mod, block = calls[consumer]
        r = reg if consumer == region else far
        domain = c.address.split(".", 1)[1] if "." in c.address else ""
        if not block.get("peer_internal_domain") or not domain.endswith(str(block.get("peer_internal_domain"))):
            out.append(Broken(r.rel, block.line, "inter-region", c.id,
                              f"module {mod} does not resolve {owner}'s private names ({c.address})"))
    # AWS: the entering flow passes the private subnets' network ACL
    entering, entering_cidrs = (reg, remote) if inbound else (far, local)
    if entering.cloud == "aws" and entering.doc is not None:
        net = entering.modules.get("network")
        missing = acl_misses(entering, entering_cidrs, c.dest_port)
        if missing:
            out.append(Broken(entering.rel, net.line_of("peer_ingress") if net else 0, "inter-region", c.id,
                              f"the private subnets' network ACL (network.peer_ingress) admits no {', '.join(missing)} "
                              f"on {c.dest_port}/tcp"))
        rel, text = _module_text(entering, "network")
        if "for_each = var.peer_ingress" not in text:
            out.append(Broken(rel or entering.rel, 1, "inter-region", c.id, "the network module does not apply peer_ingress"))
    return out


def _check_egress(reg: _Region, c) -> list[Broken]:
    if reg.doc is None:
        return [Broken(reg.rel, 0, "cloud-firewall-egress", c.id, "the region has no Terraform root")]
    dh = reg.modules.get("data_hosts")
    if dh is None:
        return [Broken(reg.rel, 1, "cloud-firewall-egress", c.id, "no module data_hosts")]
    if reg.cloud != "aws":
        rel, text = _module_text(reg, "data_hosts")
        net_rel, net_text = _module_text(reg, "network")
        if re.search(r'direction\s*=\s*"EGRESS"[^}]*deny|access\s*=\s*"Deny"[^}]*direction\s*=\s*"Outbound"',
                     text + net_text, re.S):
            return [Broken(rel or reg.rel, 1, "cloud-firewall-egress", c.id, "a deny rule may stop the hosts' egress")]
        return []
    hosts = dh.get("hosts")
    group_of = {h.get("fqdn"): h.get("group") for h in (hosts.values() if isinstance(hosts, Obj) else [])
                if isinstance(h, Obj)}
    rules = dh.get("egress_rules")
    out = []
    for group in sorted({group_of.get(h) for h in c.source.hosts}):
        lst = rules.get(group) if isinstance(rules, Obj) else None
        ok = [r for r in (lst if isinstance(lst, Lst) else []) if isinstance(r, Obj)
              and r.get("from_port") <= c.dest_port <= r.get("to_port")]
        missing = _covered(c.dest.cidrs, [x for r in ok for x in (r.get("cidr_blocks") or [])])
        if missing:
            out.append(Broken(reg.rel, dh.line_of("egress_rules"), "cloud-firewall-egress", c.id,
                              f"no egress rule of the {group} hosts reaches {', '.join(missing)} on {c.dest_port}/tcp"))
    rel, text = _module_text(reg, "data_hosts")
    if "for_each = lookup(var.egress_rules, each.key, [])" not in text:
        out.append(Broken(rel or reg.rel, 1, "cloud-firewall-egress", c.id, "the data_hosts module does not apply egress_rules"))
    return out


_REQUIRE = re.compile(r'require\("(?P<module>[A-Za-z0-9._]+)"\)\.(?P<fn>[A-Za-z_]+)')
_MAP_VERSION = re.compile(r"-- home-region map: \S+ version (?P<v>[0-9a-f]+)")
# The kong chart's lua_package_path (its _helpers.tpl sets KONG_LUA_PACKAGE_PATH to /opt/?.lua;/opt/?/init.lua;;).
_CHART_LUA_ROOT = "/opt/"


class _Map(NamedTuple):
    """What verify found of the home-region map a region's Kong requires: where, and what is broken (None: it reaches
    the pods), the homes it maps and its version."""
    file: str
    line: int
    broken: str | None = None
    homes: frozenset = frozenset()
    version: str = ""


def _gateway_map(tree, region: str, module: str, fn: str) -> _Map:
    """Read once per region (every forwarding connection of the region asks)."""
    memo = tree.__dict__.setdefault("_gateway_map", {})
    key = (region, module, fn)
    if key not in memo:
        memo[key] = _read_gateway_map(tree, region, module, fn)
    return memo[key]


def _read_gateway_map(tree, region: str, module: str, fn: str) -> _Map:
    import posixpath
    hf = f"helm/{region}/helmfile.yaml"
    releases = (tree.yaml_docs(hf) or [{}])[0].get("releases") or []
    kong = next((r for r in releases if r.get("name") == "kong"), None)
    if kong is None:
        return _Map(hf, 0, "the helmfile installs no kong release")
    values_rel = f"helm/{region}/kong.values.yaml"
    values = (tree.yaml_docs(values_rel) or [{}])[0]
    requires = str((values.get("env") or {}).get("untrusted_lua_sandbox_requires") or "").split(",")
    if module not in requires:
        return _Map(values_rel, tree.line_of(values_rel, "untrusted_lua_sandbox_requires"),
                    f"Kong's sandbox does not allow require({module!r}) (env.untrusted_lua_sandbox_requires)")
    path = _CHART_LUA_ROOT + module.replace(".", "/") + ".lua"
    mount = next((m for m in values.get("extraConfigMaps") or []
                  if path.startswith(str(m.get("mountPath", "")).rstrip("/") + "/")), None)
    if mount is None:
        return _Map(values_rel, tree.line_of(values_rel, "extraConfigMaps"), f"no ConfigMap is mounted where {path} would be")
    key = path[len(str(mount["mountPath"]).rstrip("/")) + 1:]
    # the release that installs a chart holding that ConfigMap, before Kong
    for rel in releases:
        chart = str(rel.get("chart") or "")
        if not chart.startswith((".", "/")):
            continue
        chart_dir = posixpath.normpath(posixpath.join(f"helm/{region}", chart))
        for t in tree.glob(f"{chart_dir}/templates/*.yaml"):
            for doc in tree.yaml_docs(t):
                meta = doc.get("metadata") or {}
                if not (doc.get("kind") == "ConfigMap" and meta.get("name") == mount["name"]
                        and meta.get("namespace") == kong.get("namespace") == rel.get("namespace")):
                    continue
                if f"{rel.get('namespace')}/{rel.get('name')}" not in (kong.get("needs") or []):
                    return _Map(hf, tree.line_of(hf, "- name: kong"), f"Kong does not wait for release {rel.get('name')}")
                source = (doc.get("data") or {}).get(key)
                if not isinstance(source, str):
                    return _Map(t, tree.line_of(t, "data:"), f"ConfigMap {mount['name']} has no key {key}")
                if f"function M.{fn}(" not in source or not source.rstrip().endswith("return M"):
                    return _Map(t, tree.line_of(t, key), f"the module {module} defines no {fn}")
                homes = re.search(r"^\s*local HOME = \{(?P<body>[^}]*)\}", source, re.M)
                version = re.search(r'^\s*local M = \{version = "(?P<v>[0-9a-f]+)"\}', source, re.M)
                return _Map(t, tree.line_of(t, key), None,
                            frozenset(re.findall(r'"([^"]+)"', homes.group("body")) if homes else ()),
                            version.group("v") if version else "")
    return _Map(hf, 0, f"no release installs ConfigMap {mount['name']} in namespace {kong.get('namespace')}")


_UPSTREAM_ROW = re.compile(r'^\s*\["(?P<home>[^"]+)"\] = \{(?P<body>[^}]*)\},\s*$', re.M)


def _check_forward(tree, region: str, c) -> list[Broken]:
    rel = f"kong/{region}/kong.yaml"
    text = tree.text(rel)
    if text is None:
        return [Broken(rel, 0, "kong-forward", c.id, "no Kong file")]
    docs = tree.yaml_docs(rel)  # read once per file (every forwarding connection of the region reads it), by libyaml
    doc = docs[0] if docs else {}
    home = c.dest.name[len("gateway-"):]
    fn = next((p for p in doc.get("plugins") or [] if p.get("name") == "pre-function"), None)
    code = "\n".join((fn or {}).get("config", {}).get("access") or [])
    line = tree.line_of(rel, "name: pre-function") if fn else 0
    if not fn or "home-region routing" not in code:
        return [Broken(rel, line, "kong-forward", c.id, "no home-region routing function (pre-function)")]
    req = _REQUIRE.search(code)
    if req is None:
        return [Broken(rel, line, "kong-forward", c.id, "the routing function requires no home-region map")]
    found = _gateway_map(tree, region, req.group("module"), req.group("fn"))
    if found.broken:
        return [Broken(found.file, found.line, "kong-forward", c.id, found.broken)]
    wanted = _MAP_VERSION.search(code)
    if wanted is None or wanted.group("v") != found.version:
        return [Broken(rel, line, "kong-forward", c.id, f"the routing function expects map version "
                       f"{wanted.group('v') if wanted else '(none named)'}, the mounted map is {found.version or 'unversioned'}")]
    if home not in found.homes:
        return [Broken(found.file, found.line, "kong-forward", c.id, f"the home-region map homes no franchise in {home}")]
    row = next((m for m in _UPSTREAM_ROW.finditer(code) if m.group("home") == home), None)
    if row is None:
        return [Broken(rel, line, "kong-forward", c.id, f"the routing function forwards nothing to {home}")]
    names = re.findall(r'= "([^"]+)"', row.group("body"))
    ups = {u.get("name"): u for u in doc.get("upstreams") or []}
    out = []
    for name in names:
        u = ups.get(name)
        targets = [t.get("target") for t in (u or {}).get("targets") or []]
        if targets != [f"{c.address}:{c.port}"]:
            out.append(Broken(rel, tree.line_of(rel, f"name: {name}") if u else line, "kong-forward", c.id,
                              f"upstream {name} targets {targets or 'nothing'}, not {c.address}:{c.port}"))
    return out or ([] if names else [Broken(rel, line, "kong-forward", c.id, f"no upstream for {home}")])


def _check_gateway(reg: _Region, c) -> list[Broken]:
    if reg.doc is None:
        return [Broken(reg.rel, 0, "internal-gateway", c.id, "the region has no Terraform root")]
    lb = reg.modules.get("load_balancer")
    rel, doc = reg.module_doc("load_balancer")
    if lb is None or doc is None:
        return [Broken(reg.rel, 1, "internal-gateway", c.id, "no load_balancer module")]
    out = []
    if reg.cloud == "gcp":
        return _check_gcp_gateway(reg, lb, rel, doc, c)
    if reg.cloud == "azure":
        return _check_azure_gateway(reg, lb, rel, doc, c)
    if reg.cloud != "aws":
        return [Broken(rel, 1, "internal-gateway", c.id, f"no internal gateway is built on {reg.cloud}")]
    if c.dest.kind == "internal-lb":
        gw = lb.get("internal_gateway")
        if not isinstance(gw, Obj):
            return [Broken(reg.rel, lb.line, "internal-gateway", c.id, "load_balancer.internal_gateway is not set")]
        if gw.get("name") != c.address or gw.get("port") != c.dest_port:
            out.append(Broken(reg.rel, lb.line_of("internal_gateway"), "internal-gateway", c.id,
                              f"the internal gateway is {gw.get('name')}:{gw.get('port')}, not {c.address}:{c.dest_port}"))
        missing = _covered(c.source.cidrs, list(gw.get("source_cidrs") or []))
        if missing:
            out.append(Broken(reg.rel, lb.line_of("internal_gateway"), "internal-gateway", c.id,
                              f"the internal gateway does not admit {', '.join(missing)}"))
        nlb = _resource(doc, "aws_lb", "internal_gateway")
        listener = _resource(doc, "aws_lb_listener", "internal_gateway")
        record = _resource(doc, "aws_route53_record", "internal_gateway")
        sg = _resource(doc, "aws_security_group", "internal_gateway")
        ing = sg.block("ingress") if sg else None
        if not nlb or nlb.get("internal") is not True or nlb.get("load_balancer_type") != "network":
            out.append(Broken(rel, nlb.line if nlb else 1, "internal-gateway", c.id, "no internal network load balancer"))
        if not listener or listener.get("port") != "var.internal_gateway.port":
            out.append(Broken(rel, listener.line if listener else 1, "internal-gateway", c.id,
                              "the internal gateway has no listener on var.internal_gateway.port"))
        if not record or record.get("name") != "var.internal_gateway.name" or record.get("zone_id") != "var.internal_zone_id":
            out.append(Broken(rel, record.line if record else 1, "internal-gateway", c.id,
                              "the internal gateway's name is not in the region's private zone"))
        if not ing or ing.get("cidr_blocks") != "var.internal_gateway.source_cidrs" \
                or ing.get("from_port") != "var.internal_gateway.port":
            out.append(Broken(rel, sg.line if sg else 1, "internal-gateway", c.id,
                              "the internal gateway's security group does not admit its sources on its port"))
    elif c.source.kind == "internal-lb":
        tg = _resource(doc, "aws_lb_target_group", "internal_gateway")
        att = _resource(doc, "aws_lb_target_group_attachment", "internal_gateway")
        alb = _resource(doc, "aws_lb", "this")
        sg = _resource(doc, "aws_security_group", "from_internal_gateway")
        ing = sg.block("ingress") if sg else None
        if not tg or tg.get("target_type") != "alb" or tg.get("port") != "var.listener_port":
            out.append(Broken(rel, tg.line if tg else 1, "internal-gateway", c.id,
                              "the internal gateway's target group is not the load balancer's listener"))
        if not att or att.get("target_id") != "aws_lb.this.arn":
            out.append(Broken(rel, att.line if att else 1, "internal-gateway", c.id,
                              "the internal gateway's target is not the region's load balancer"))
        if not alb or "aws_security_group.from_internal_gateway" not in str(alb.get("security_groups")):
            out.append(Broken(rel, alb.line if alb else 1, "internal-gateway", c.id,
                              "the load balancer does not carry the group admitting the internal gateway"))
        if not ing or ing.get("from_port") != "var.listener_port" or \
                "aws_security_group.internal_gateway" not in str(ing.get("security_groups")):
            out.append(Broken(rel, sg.line if sg else 1, "internal-gateway", c.id,
                              "the load balancer does not admit the internal gateway on its listener port"))
    return out


def _check_endpoint(tree, reg: _Region, region: str, c) -> list[Broken] | None:
    """The PostgreSQL endpoint the connection dials: None when it dials none."""
    if not _ENDPOINT.match(c.address):
        return None
    owner = c.address.split(".internal.")[0].split(".", 1)[1]
    r = reg if owner == region else _Region(tree, owner)
    if r.doc is None:
        return [Broken(r.rel, 0, "postgres-endpoint", c.id, f"region {owner} has no Terraform root")]
    dh = r.modules.get("data_hosts")
    eps = dh.get("postgres_endpoints") if dh else None
    ep = next((e for e in (eps.values() if isinstance(eps, Obj) else []) if isinstance(e, Obj) and e.get("fqdn") == c.address), None)
    if ep is None:
        return [Broken(r.rel, dh.line_of("postgres_endpoints") if dh else 1, "postgres-endpoint", c.id,
                       f"no internal load balancer answers {c.address} (data_hosts.postgres_endpoints)")]
    out = []
    if ep.get("port") != c.dest_port:
        out.append(Broken(r.rel, dh.line_of("postgres_endpoints"), "postgres-endpoint", c.id,
                          f"{c.address} forwards port {ep.get('port')}, not {c.dest_port}"))
    want = _ENDPOINT_HEALTH[_ENDPOINT.match(c.address).group("name")]
    if ep.get("health_path") != want:
        out.append(Broken(r.rel, dh.line_of("postgres_endpoints"), "postgres-endpoint", c.id,
                          f"{c.address} checks {ep.get('health_path')}, not Patroni's {want}"))
    hosts = dh.get("hosts")
    fqdn = {h.get("fqdn"): name for name, h in (hosts.items() if isinstance(hosts, Obj) else []) if isinstance(h, Obj)}
    members = set(ep.get("hosts") or [])
    if owner == region and c.dest.hosts:
        missing = sorted(h for h in c.dest.hosts if fqdn.get(h) not in members)
        if missing:
            out.append(Broken(r.rel, dh.line_of("postgres_endpoints"), "postgres-endpoint", c.id,
                              f"{c.address} does not balance over {', '.join(missing)}"))
    rel, doc = r.module_doc("data_hosts")
    for rtype, name, attr, value in _ENDPOINT_RESOURCES.get(r.cloud, []):
        res = _resource(doc, rtype, name)
        if res is None or res.get(attr) != value:
            out.append(Broken(rel or r.rel, res.line if res else 1, "postgres-endpoint", c.id,
                              f"the data_hosts module's {rtype}.{name} lacks {attr} = {value}"))
    key = next(k for k, e in eps.items() if e is ep)  # the endpoint's entry in the root's map
    if r.cloud == "aws":
        out += _aws_names_differ(doc, rel or r.rel, c, key, [k for k in eps if k != key])
    if r.cloud == "azure":
        out += _azure_endpoint(doc, rel or r.rel, r.rel, dh, c, key, eps)
    if r.cloud in _HEALTH:
        rtype, name, block, attr = _HEALTH[r.cloud]
        res = _resource(doc, rtype, name)
        b = res.block(block) if res else None
        if not b or b.get(attr) != "each.value.health_path" or b.get("port") not in ("each.value.health_port",
                                                                                        "tostring(each.value.health_port)"):
            out.append(Broken(rel or r.rel, res.line if res else 1, "postgres-endpoint", c.id,
                              "the health check is not Patroni's REST path and port"))
    return out


def _azure_endpoint(doc, rel: str, root: str, dh, c, key: str, eps) -> list[Broken]:
    """Azure: the endpoints are frontends of one internal load balancer whose backend pool holds the members' `primary`
    IP configurations, and each endpoint's rule delivers to a backend port of its own. Azure admits an IP configuration
    to the pools of one internal load balancer only ("Azure Load Balancer limits"), and refuses two rules over it on
    one backend port without Floating IP ("Multiple frontends for Azure Load Balancer": "must not be used with the
    same backend ip"), which would deliver the packets addressed to the frontend's IP, an address the members do not
    hold. That the members redirect the backend port to PostgreSQL's is the nftables layer's to prove (hosts.py)."""
    L = "postgres-endpoint"
    out = []
    lb = _resource(doc, "azurerm_lb", "postgres")
    pool = _resource(doc, "azurerm_lb_backend_address_pool", "postgres")
    assoc = _resource(doc, "azurerm_network_interface_backend_address_pool_association", "postgres")
    rule = _resource(doc, "azurerm_lb_rule", "postgres")
    record = _resource(doc, "azurerm_private_dns_a_record", "postgres")
    if lb is None or lb.get("for_each") is not None or pool is None or pool.get("for_each") is not None \
            or "azurerm_lb.postgres" not in str(pool.get("loadbalancer_id")):
        out.append(Broken(rel, (lb or pool).line if (lb or pool) else 1, L, c.id,
                          "the endpoints are not one load balancer with one backend pool (azurerm_lb.postgres, "
                          "azurerm_lb_backend_address_pool.postgres): Azure admits the members' IP configuration to "
                          "the pools of one internal load balancer only"))
    joins = str(assoc.get("backend_address_pool_id")) if assoc else ""
    if assoc is not None and ("azurerm_lb_backend_address_pool.postgres" not in joins or "each.value.endpoint" in joins):
        out.append(Broken(rel, assoc.line, L, c.id, "the members' IP configurations do not join the one backend pool"))
    dyn = lb.block("dynamic", "frontend_ip_configuration") if lb else None
    content = dyn.block("content") if dyn else None
    if not dyn or dyn.get("for_each") != _PER_ENDPOINT or not content \
            or content.get("name") != "frontend_ip_configuration.key":
        out.append(Broken(rel, lb.line if lb else 1, L, c.id,
                          f"azurerm_lb.postgres has no frontend named {key} (a dynamic frontend_ip_configuration per "
                          f"entry of {_PER_ENDPOINT}, named by its key)"))
    if rule is not None and (rule.get("floating_ip_enabled") is True or rule.get("enable_floating_ip") is True):
        out.append(Broken(rel, rule.line, L, c.id, "azurerm_lb_rule.postgres uses Floating IP: the members would get "
                          "packets addressed to the frontend's IP, which they do not hold"))
    if rule is not None and ("azurerm_lb.postgres" not in str(rule.get("loadbalancer_id")) or
                             "azurerm_lb_backend_address_pool.postgres" not in str(rule.get("backend_address_pool_ids"))):
        out.append(Broken(rel, rule.line, L, c.id,
                          "azurerm_lb_rule.postgres is not the load balancer's rule over its pool"))
    records = str(record.get("records")) if record else ""
    if record is not None and ("azurerm_lb.postgres" not in records or "f.name == each.key" not in records):
        out.append(Broken(rel, record.line, L, c.id,
                          f"the {key} endpoint's record does not name its frontend's address (records: {records})"))
    # the root's side: each endpoint a backend port, none shared
    mine = eps[key].get("backend_port")
    if not isinstance(mine, int):
        out.append(Broken(root, dh.line_of("postgres_endpoints"), L, c.id,
                          f"{c.address} has no backend_port (the members' port its rule delivers to)"))
    else:
        same = [k for k, e in eps.items() if k != key and isinstance(e, Obj) and e.get("backend_port") == mine]
        if same:
            out.append(Broken(root, dh.line_of("postgres_endpoints"), L, c.id,
                              f"{c.address} delivers to backend port {mine}, as the {', '.join(same)} endpoint does: "
                              "Azure refuses two rules over the members' IP configuration on one backend port "
                              "without Floating IP"))
    return out


def _name_for(name: str, key: str, maps: dict) -> str | None:
    """The name a for_each resource gets for `key`, its interpolations of each.key worked out: `${each.key}`,
    `${local.<map>[each.key]}`, `${each.key == "k" ? "a" : "b"}`; None for any other use of each.key (unknown)."""
    def one(m):
        expr = m.group(1).strip()
        if "each.key" not in expr:
            return m.group(0)  # the same for every endpoint
        if expr == "each.key":
            return key
        lk = _LOCAL_BY_KEY.fullmatch(expr)
        if lk:
            value = maps.get(lk.group("map"), {}).get(key)
            return value if isinstance(value, str) else "\0"  # a key the map lacks: no name (terraform fails)
        t = _KEY_TERNARY.fullmatch(expr)
        if t:
            return t.group("a") if key == t.group("k") else t.group("b")
        raise LookupError(expr)
    try:
        return re.sub(r"\$\{([^{}]*)\}", one, name)
    except LookupError:
        return None


def _aws_names_differ(doc, rel: str, c, key: str, others: list[str]) -> list[Broken]:
    """The endpoint's load balancer and target group names differ from the region's other endpoints' (AWS refuses a
    second load balancer or target group of one name)."""
    out = []
    maps = {}
    for block in (b for b in (doc.blocks if doc else []) if b.type == "locals"):
        maps.update({k: v for k, v in block.attrs.items() if isinstance(v, Obj)})
    for rtype in _AWS_NAMED:
        res = _resource(doc, rtype, "postgres")
        name = res.get("name") if res else None
        if not isinstance(name, str):
            continue
        mine = _name_for(name, key, maps)
        if mine is None:
            continue  # an expression verify cannot work out: terraform's plan tells
        if "\0" in mine:
            out.append(Broken(rel, res.line, "postgres-endpoint", c.id,
                              f"{rtype}.postgres's name ({name}) has no value for the {key} endpoint"))
            continue
        same = [k for k in others if _name_for(name, k, maps) == mine]
        if same:
            out.append(Broken(rel, res.line, "postgres-endpoint", c.id,
                              f"{rtype}.postgres names the {key} endpoint's as the {', '.join(same)} endpoint's "
                              f"({name}): AWS creates only one of them"))
    return out


def _check_gcp_gateway(reg: _Region, lb, rel: str, doc, c) -> list[Broken]:
    """GCP: an internal proxy NLB over Kong's NEGs with global access, named in the private zone; its proxies'
    subnet is the network module's proxy-only subnet, which the firewall opens to Kong's port."""
    out = []
    net = reg.modules.get("network")
    proxy = net.get("proxy_cidr") if net else None
    if c.dest.kind == "internal-lb":
        gw = lb.get("internal_gateway")
        if not isinstance(gw, Obj) or gw.get("name") != c.address or gw.get("port") != c.dest_port:
            return [Broken(reg.rel, lb.line_of("internal_gateway"), "internal-gateway", c.id,
                           f"load_balancer.internal_gateway is not {c.address}:{c.dest_port}")]
        rule = _resource(doc, "google_compute_forwarding_rule", "internal_gateway")
        record = _resource(doc, "google_dns_record_set", "internal_gateway")
        backend = _resource(doc, "google_compute_region_backend_service", "internal_gateway")
        if not rule or rule.get("load_balancing_scheme") != "INTERNAL_MANAGED" or rule.get("allow_global_access") is not True \
                or rule.get("port_range") != "tostring(var.internal_gateway.port)":
            out.append(Broken(rel, rule.line if rule else 1, "internal-gateway", c.id,
                              "no internal proxy forwarding rule with global access on var.internal_gateway.port"))
        if not record or record.get("name") != "${var.internal_gateway.name}." or record.get("managed_zone") != "var.internal_zone_name":
            out.append(Broken(rel, record.line if record else 1, "internal-gateway", c.id,
                              "the internal gateway's name is not in the region's private zone"))
        dyn = backend.block("dynamic", "backend") if backend else None
        content = dyn.block("content") if dyn else None
        if not content or "networkEndpointGroups/${var.neg_name}" not in str(content.get("group")):
            out.append(Broken(rel, backend.line if backend else 1, "internal-gateway", c.id,
                              "the internal gateway's backends are not Kong's NEGs"))
        if not proxy:
            out.append(Broken(reg.rel, net.line if net else 1, "internal-gateway", c.id, "no proxy-only subnet (network.proxy_cidr)"))
    elif c.source.kind == "internal-lb":
        if proxy is None or _covered(c.source.cidrs, [proxy]):
            out.append(Broken(reg.rel, net.line_of("proxy_cidr") if net else 1, "internal-gateway", c.id,
                              f"the proxy-only subnet is {proxy or 'missing'}, not {', '.join(c.source.cidrs)}"))
        nrel, ndoc = reg.module_doc("network")
        sub = _resource(ndoc, "google_compute_subnetwork", "proxy")
        fw = _resource(ndoc, "google_compute_firewall", "internal_gateway")
        allow = fw.block("allow") if fw else None
        if not sub or sub.get("purpose") != "REGIONAL_MANAGED_PROXY" or sub.get("ip_cidr_range") != "var.proxy_cidr":
            out.append(Broken(nrel or reg.rel, sub.line if sub else 1, "internal-gateway", c.id, "no proxy-only subnetwork"))
        if not fw or fw.get("source_ranges") != "[var.proxy_cidr]" and fw.get("source_ranges") != ["var.proxy_cidr"] \
                or not allow or "var.lb_target_port" not in str(allow.get("ports")):
            out.append(Broken(nrel or reg.rel, fw.line if fw else 1, "internal-gateway", c.id,
                              "the firewall does not open Kong's port to the proxy-only subnet"))
        if net and net.get("lb_target_port") != c.dest_port:
            out.append(Broken(reg.rel, net.line_of("lb_target_port"), "internal-gateway", c.id,
                              f"the firewall opens {net.get('lb_target_port')}, not Kong's {c.dest_port}"))
    return out


_AZURE_LB = "service.beta.kubernetes.io/azure-load-balancer-"
_AZURE_NSG_RULE = (r'dynamic "security_rule" \{ for_each = var\.internal_gateway == null \? \[\] : \[var\.internal_gateway\] '
                   r'content \{ name = "internal-gateway-from-peers" priority = \d+ direction = "Inbound" access = "Allow" '
                   r'protocol = "Tcp" source_port_range = "\*" destination_port_range = tostring\(security_rule\.value\.port\) '
                   r'source_address_prefixes = security_rule\.value\.source_cidrs '
                   r'destination_address_prefix = security_rule\.value\.address \}')


def _azure_services(reg: _Region) -> list[tuple[str, dict]]:
    """The region's internal load balancer Services (AKS's internal annotation), with their files."""
    out = []
    for rel in reg.tree.glob(f"kubernetes/{reg.tree_region}/*.yaml"):
        for _, d in reg.tree.documents(rel):
            if isinstance(d, dict) and d.get("kind") == "Service" and (d.get("spec") or {}).get("type") == "LoadBalancer" \
                    and ((d.get("metadata") or {}).get("annotations") or {}).get(_AZURE_LB + "internal") == "true":
                out.append((rel, d))
    return out


def _check_azure_gateway(reg: _Region, lb, rel: str, doc, c) -> list[Broken]:
    """Azure: an internal Standard Load Balancer that AKS builds from Kong's LoadBalancer Service with the internal
    annotation, at the address Terraform's private DNS record (data_hosts, beside the zone) names (the Service pins it with
    azure-load-balancer-ipv4), inside the node subnet; the private subnets' NSG opens that address and port to the
    peered regions' Kong (AKS opens its own from the Service's loadBalancerSourceRanges); the Service passes the
    port to Kong's TLS port, keeping the callers' addresses (externalTrafficPolicy Local) for Kong's NetworkPolicy."""
    out = []
    services = _azure_services(reg)
    if c.dest.kind == "internal-lb":
        # AKS builds the load balancer: Terraform's part is the record, beside the private zone (data_hosts)
        lb = reg.modules.get("data_hosts")
        rel, doc = reg.module_doc("data_hosts")
        if lb is None or doc is None:
            return [Broken(reg.rel, 1, "internal-gateway", c.id, "no data_hosts module (the private zone)")]
        gw = lb.get("internal_gateway")
        if not isinstance(gw, Obj) or gw.get("name") != c.address or gw.get("port") != c.dest_port:
            return [Broken(reg.rel, lb.line_of("internal_gateway"), "internal-gateway", c.id,
                           f"data_hosts.internal_gateway is not {c.address}:{c.dest_port}")]
        address = gw.get("address")
        nodes = list((reg.tree.region_info(reg.tree_region).get("addressing") or {}).get("node_cidrs") or [])
        if not isinstance(address, str) or _net(address) is None or _covered([address], nodes):
            out.append(Broken(reg.rel, lb.line_of("internal_gateway"), "internal-gateway", c.id,
                              f"the internal gateway's address {address} is not in the node subnets {', '.join(nodes)}"))
        missing = _covered(c.source.cidrs, list(gw.get("source_cidrs") or []))
        if missing:
            out.append(Broken(reg.rel, lb.line_of("internal_gateway"), "internal-gateway", c.id,
                              f"the internal gateway does not admit {', '.join(missing)}"))
        record = _resource(doc, "azurerm_private_dns_a_record", "internal_gateway")
        if not record or record.get("zone_name") != "azurerm_private_dns_zone.internal.name" \
                or "var.internal_gateway.address" not in str(record.get("records")) \
                or "var.internal_gateway.name" not in str(record.get("name")):
            out.append(Broken(rel, record.line if record else 1, "internal-gateway", c.id,
                              "the internal gateway's name is not in the region's private zone at its address"))
        # the NSG of the private subnets (network module) opens the address and port to the same sources
        net = reg.modules.get("network")
        ngw = net.get("internal_gateway") if net else None
        if not isinstance(ngw, Obj) or ngw.get("address") != address or ngw.get("port") != c.dest_port \
                or _covered(c.source.cidrs, list(ngw.get("source_cidrs") or [])):
            have = f"{ngw.get('address')}:{ngw.get('port')} from {', '.join(ngw.get('source_cidrs') or [])}" \
                if isinstance(ngw, Obj) else "nothing"
            out.append(Broken(reg.rel, net.line_of("internal_gateway") if net else 1, "internal-gateway", c.id,
                              f"the network module's NSG opens {have}, not {address}:{c.dest_port} from "
                              f"{', '.join(c.source.cidrs)}"))
        nrel, ntext = _module_text(reg, "network")
        if not re.search(_AZURE_NSG_RULE, " ".join(ntext.split())):
            out.append(Broken(nrel or reg.rel, 1, "internal-gateway", c.id,
                              "the network module's NSG has no rule opening var.internal_gateway to its sources"))
        # Kong's Service: the same address, the gateway's port, AKS's NSG from the same sources
        if not services:
            out.append(Broken(f"kubernetes/{reg.tree_region}/kong-gateway.yaml", 0, "internal-gateway", c.id,
                              "no internal load balancer Service (azure-load-balancer-internal) in front of Kong"))
        for srel, svc in services:
            a = svc["metadata"].get("annotations") or {}
            spec = svc.get("spec") or {}
            line = reg.tree.line_of(srel, _AZURE_LB + "ipv4")
            if a.get(_AZURE_LB + "ipv4") != address:
                out.append(Broken(srel, line, "internal-gateway", c.id,
                                  f"Service {svc['metadata'].get('name')} takes address {a.get(_AZURE_LB + 'ipv4')}, "
                                  f"while the private DNS record names {address}"))
            if not any(p.get("port") == c.dest_port for p in spec.get("ports") or []):
                out.append(Broken(srel, line, "internal-gateway", c.id,
                                  f"Service {svc['metadata'].get('name')} does not listen on {c.dest_port}"))
            missing = _covered(c.source.cidrs, list(spec.get("loadBalancerSourceRanges") or []))
            if missing:
                out.append(Broken(srel, line, "internal-gateway", c.id,
                                  f"Service {svc['metadata'].get('name')}'s loadBalancerSourceRanges do not admit "
                                  f"{', '.join(missing)}"))
    elif c.source.kind == "internal-lb":
        svc = next((d for _, d in services if ((d["metadata"].get("annotations") or {}).get(_AZURE_LB + "ipv4")) == c.address), None)
        srel = next((r for r, d in services if d is svc), f"kubernetes/{reg.tree_region}/kong-gateway.yaml")
        if svc is None:
            return [Broken(srel, 0, "internal-gateway", c.id, f"no internal load balancer Service at {c.address}")]
        spec = svc.get("spec") or {}
        line = reg.tree.line_of(srel, "externalTrafficPolicy")
        if not any(p.get("port") == c.port and p.get("targetPort") == c.dest_port for p in spec.get("ports") or []):
            out.append(Broken(srel, line, "internal-gateway", c.id,
                              f"Service {svc['metadata'].get('name')} does not pass {c.port} to Kong's {c.dest_port}"))
        selector = {k: v for k, v in (spec.get("selector") or {}).items() if k != "__line__"}
        if not selector or any(c.dest.labels.get(k) != v for k, v in selector.items()):
            out.append(Broken(srel, line, "internal-gateway", c.id,
                              f"Service {svc['metadata'].get('name')} does not select {c.dest.name}'s pods"))
        if spec.get("externalTrafficPolicy") != "Local":
            out.append(Broken(srel, line, "internal-gateway", c.id,
                              f"Service {svc['metadata'].get('name')} is not externalTrafficPolicy Local: Kong would see "
                              f"the nodes' addresses, not {', '.join(c.source.cidrs)}"))
    return out


def check(tree, region, connections):
    reg = _Region(tree, region)
    for c in connections:
        broken = _check_endpoint(tree, reg, region, c)
        if broken is not None:
            yield Result("postgres-endpoint", c.id, broken)
    for c in connections:
        if "inter-region" in c.layers:
            yield Result("inter-region", c.id, _check_link(tree, reg, region, c))
        if "cloud-firewall-egress" in c.layers:
            yield Result("cloud-firewall-egress", c.id, _check_egress(reg, c))
        if "kong-forward" in c.layers:
            yield Result("kong-forward", c.id, _check_forward(tree, region, c))
        if "internal-gateway" in c.layers:
            yield Result("internal-gateway", c.id, _check_gateway(reg, c))
