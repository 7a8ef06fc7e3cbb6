"""wiring._free_ranges and wiring._proxy_range work on address integers (issue 16: start-up); they must answer as the
ipaddress versions they replaced, kept here as the reference, for any region range and zone carve."""

from __future__ import annotations

import ipaddress
import random

from compiler.ir import Zone
from compiler.resolve import carve_subnets
from compiler.wiring import _free_ranges, _proxy_range


def _free_ranges_by_ipaddress(cidr, zones):
    net = ipaddress.ip_network(cidr)
    used = [ipaddress.ip_network(c) for z in zones for c in (z.private_cidr, z.public_cidr)]
    free = [net]
    for u in used:
        nxt = []
        for f in free:
            if u.subnet_of(f):
                nxt.extend(f.address_exclude(u))
            elif not f.subnet_of(u):
                nxt.append(f)
        free = nxt
    free.sort(key=lambda n: (n.prefixlen, int(n.network_address)))
    if len(free) < 2:
        return "", ""
    services = free[1] if free[1].prefixlen >= 20 else next(free[1].subnets(new_prefix=20))
    return str(free[0]), str(services)


def _proxy_range_by_ipaddress(cidr, zones, pods, services):
    used = [ipaddress.ip_network(c) for z in zones for c in (z.private_cidr, z.public_cidr)]
    used += [ipaddress.ip_network(c) for c in (pods, services) if c]
    net = ipaddress.ip_network(cidr)
    for prefix in range(max(23, net.prefixlen), 27):
        for block in net.subnets(new_prefix=prefix):
            if not any(block.overlaps(u) for u in used):
                return str(block)
    return ""


def _cases(count: int):
    rng = random.Random(16)
    made = 0
    while made < count:
        prefix = rng.randint(8, 26)
        base = rng.getrandbits(32) >> (32 - prefix) << (32 - prefix)
        cidr = str(ipaddress.IPv4Network((base, prefix)))
        zones = rng.randint(1, 4)
        private = rng.randint(prefix, 28)
        public = rng.randint(private, 28)
        carve = carve_subnets(cidr, zones, private, public)
        if carve is None:
            continue
        made += 1
        yield cidr, tuple(Zone(f"z{i}", p, pub) for i, (p, pub) in enumerate(carve))


def test_free_ranges_answer_as_address_exclude():
    for cidr, zones in _cases(400):
        assert _free_ranges(cidr, zones) == _free_ranges_by_ipaddress(cidr, zones), (cidr, zones)


def test_proxy_range_answers_as_the_subnet_scan():
    for cidr, zones in _cases(300):
        pods, services = _free_ranges_by_ipaddress(cidr, zones)
        for p, s in ((pods, services), ("", ""), (pods, "")):
            assert _proxy_range(cidr, zones, p, s) == _proxy_range_by_ipaddress(cidr, zones, p, s), (cidr, zones, p, s)


def test_the_reference_regions():
    """The reference's /16 regions: pods in the largest free block, Services in the first /20 of the next."""
    zones = tuple(Zone(f"z{i}", p, pub) for i, (p, pub) in enumerate(carve_subnets("10.8.0.0/16", 3, 19, 24)))
    assert _free_ranges("10.8.0.0/16", zones) == ("10.8.128.0/17", "10.8.112.0/20")
    assert _proxy_range("10.8.0.0/16", zones, "10.8.128.0/17", "10.8.112.0/20") == "10.8.100.0/23"
