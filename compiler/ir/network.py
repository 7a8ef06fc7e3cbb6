"""The inter-region network: which regions are linked, and the names the links carry.

Two needs cross regions, both within one cloud (R051 refuses a DR partner on another cloud while the
region keeps a cross-region standby):
- the DR partner's standby streams WAL from the region's primary (PostgreSQL, the partner's hosts dial the
  primary's FQDN in the region's private zone);
- home-region routing: Kong in every region forwards a request whose franchise lives elsewhere to the home
  region's internal gateway (gateway.<home>.internal.<domain>), when the home is on the same cloud.

So the links are every pair of regions on the same cloud (a full mesh per cloud): each region's VPC/VNet is
peered with every other of its cloud, routes both ways, and each region's private DNS zone is visible from
every peer's network. Peering, not a transit hub: no traffic needs to pass through a third network, a direct
peering is charged per GB transferred only (a Transit Gateway adds an hourly charge per attachment and per
GB processed), and a full mesh of n regions is n-1 peerings per network, far under each cloud's limit
(AWS 125 per VPC, GCP 25 per network, Azure 500 per VNet).

Of each pair, the region first in spec order is the requester (AWS: it creates the peering connection and
accepts it in the peer's region); the other root finds the connection by its VPCs, so the earlier region's
root is applied first (the docs say so).
"""

from __future__ import annotations

import re
from functools import lru_cache

# The internal gateway: the name other regions' Kong dials to reach this region's Kong over the peering
# (gateway.<region>.internal.<domain>, a record in the region's private zone), and its port (TLS to Kong).
INTERNAL_GATEWAY_HOST = "gateway"
INTERNAL_GATEWAY_PORT = 443
# Clouds that build the internal gateway (AWS: an internal NLB in front of the regional load balancer; GCP: an
# internal proxy Network Load Balancer over Kong's NEGs, from a proxy-only subnet; Azure: an internal Standard Load
# Balancer that AKS builds from a LoadBalancer Service in front of Kong's TLS port, at the address the IR pins,
# Addressing.internal_gateway_ip, which the private DNS record names). A home on another cloud has no private path:
# Kong answers 421 with the home's name.
INTERNAL_GATEWAY_CLOUDS = ("aws", "gcp", "azure")
# The request header a forwarding Kong sets to its own region; a Kong that receives it serves the request
# itself (never forwards twice) and a forwarded request carries where it came from into the home's logs.
FORWARDED_FROM_HEADER = "X-Platformc-Forwarded-From"
# The request header (or query argument) carrying the franchise id Kong routes by.
FRANCHISE_HEADER = "X-Franchise-Id"


# Peerings one network may hold, per cloud (AWS: active VPC peering connections per VPC, adjustable to 125;
# GCP: VPC Network Peering connections per network; Azure: VNet peerings per VNet). A full mesh of n regions
# needs n - 1 per network (R053).
PEERING_LIMITS = {"aws": 125, "gcp": 25, "azure": 500}
# AWS: the private subnets' network ACL (stateless). Its fixed inbound entries: everything from the VPC, and TCP and
# UDP from anywhere on the ephemeral ports (replies to the subnets' own outbound connections, which also admit every
# flow to a port in that range). A flow from outside the VPC to a lower port needs an entry of its own
# (private_acl_ingress), and a network ACL holds 20 inbound entries by default (Amazon VPC quotas, "Rules per
# network ACL", adjustable to 40): the reference needs 11. No validation rule counts them: the entries come from the
# wiring, which `validate` does not build (issue 16).
ACL_EPHEMERAL_FIRST = 1024
ACL_FIXED_INGRESS = 3
ACL_INGRESS_QUOTA = 20


def linked_regions(spec, name: str) -> tuple[str, ...]:
    """The regions whose networks are peered with `name`'s: every other region on the same cloud, spec order."""
    cloud = spec.regions[name].cloud
    return tuple(n for n, r in spec.regions.items() if n != name and r.cloud == cloud)


def requester(spec, a: str, b: str, positions: dict | None = None) -> str:
    """Of a linked pair, the region that requests the peering: the first in spec order. `positions` is
    spec_positions(spec), for a caller that asks for many pairs (it was rebuilt and scanned per pair)."""
    pos = positions if positions is not None else spec_positions(spec)
    return a if pos[a] < pos[b] else b


def spec_positions(spec) -> dict[str, int]:
    """Each region's position in spec order."""
    return {n: i for i, n in enumerate(spec.regions)}


def internal_gateway_name(region: str, domain: str) -> str:
    """The internal gateway's name in the region's private zone (<region>.internal.<domain>)."""
    return f"{INTERNAL_GATEWAY_HOST}.{region}.internal.{domain}"


def standby_regions(spec, name: str) -> tuple[str, ...]:
    """The regions whose DR partner is `name`: `name` keeps a standby of each one's primary."""
    return tuple(n for n, r in spec.regions.items() if r.dr_partner == name and n != name)


@lru_cache(maxsize=4096)
def provider_alias(region: str) -> str:
    """A Terraform provider alias for a linked region (letters, digits, underscores). Once per name: at 120 regions
    every region's root and docs ask for each linked region's alias, ~20,000 times."""
    return "r_" + _NOT_ALIAS.sub("_", region)


_NOT_ALIAS = re.compile(r"[^A-Za-z0-9_]")


@lru_cache(maxsize=65536)
def cidr_span(cidr: str) -> tuple[int, int, int]:
    """(IP version, first address, last address) of a CIDR (ipaddress.ip_network's, strict), as integers."""
    import ipaddress
    n = ipaddress.ip_network(cidr)
    return n.version, int(n.network_address), int(n.broadcast_address)


def from_outside(c, region) -> bool:
    """A connection whose source lies outside the region's range (ipaddress's subnet_of as integer bounds: parsing
    every CIDR of every inter-region flow again was a tenth of the Terraform target at 120 regions)."""
    w, lo, hi = cidr_span(region.cidr)
    if not c.source.cidrs:
        return False
    for x in c.source.cidrs:
        v, first, last = cidr_span(x)
        if v != w:  # subnet_of across IP versions raises TypeError: keep that
            import ipaddress
            ipaddress.ip_network(x).subnet_of(ipaddress.ip_network(region.cidr))
        if lo <= first and last <= hi:
            return False
    return True


def private_acl_ingress(region) -> list[tuple[str, int]]:
    """(source range, TCP port) of every flow that enters the private subnets from outside the region's range to a
    port below the ephemeral range: the flows crossing the peering (`inter-region`) and the hosts' other outside
    sources (`cloud-firewall` to hosts: the administrators reaching the bastion from their VPN range). Without an
    entry the network ACL drops them whatever the security groups admit."""
    import ipaddress
    by_port: dict[int, set] = {}
    for layer in ("inter-region", "cloud-firewall"):
        for c in region.through(layer):
            if layer == "cloud-firewall" and c.dest.kind != "hosts":
                continue
            if c.dest_port < ACL_EPHEMERAL_FIRST and from_outside(c, region):
                by_port.setdefault(c.dest_port, set()).update(c.source.cidrs)
    # neighbouring ranges on one port as one entry (a peer region's three zones' /19s: a /18 and a /19), so that
    # the entries fit the quota; the same addresses
    out = []
    for port, cidrs in by_port.items():
        nets = [ipaddress.ip_network(x) for x in cidrs]
        for version in (4, 6):
            out += [(str(n), port) for n in ipaddress.collapse_addresses(n for n in nets if n.version == version)]
    return sorted(out)
