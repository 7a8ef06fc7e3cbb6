"""A self-managed host's zone is a function of its own name (review r2-day2, finding 3): changing a group's size or the
Redis primary count must not move an existing host to another zone, which would replace its VM and its data volume
(aws_ebs_volume.availability_zone, aws_instance.subnet_id, the Azure disk's and VM's zone, the GCP disk's zone are
all ForceNew). Redis replicas still land outside their primary's zone wherever there is more than one zone."""

from __future__ import annotations

import itertools

import pytest

from compiler import resolve
from compiler.pipeline import compile_file
from tests.conftest import REPO


@pytest.fixture(scope="module")
def reference():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    return plan, plan.regions[0]


def _hosts(plan, region, zones: int, **counts):
    s = region.settings
    ds = s.datastores
    changed = ds.model_copy(update={
        "postgres": ds.postgres.model_copy(update={"read_replicas": counts.get("read_replicas", 3)}),
        "pgbouncer": ds.pgbouncer.model_copy(update={"hosts": counts.get("pgbouncer", 2)}),
        "redis": ds.redis.model_copy(update={"primaries": counts.get("primaries", 3),
                                             "replicas_per_primary": counts.get("replicas_per_primary", 1)}),
        "elasticsearch": ds.elasticsearch.model_copy(update={"nodes": counts.get("nodes", 3)}),
    })
    names = [f"zone-{i}" for i in range(zones)]
    return resolve.hosts(plan.spec, region.name, s.model_copy(update={"datastores": changed}), names, "internal")


def test_a_host_keeps_its_zone_whatever_the_counts_become(reference):
    plan, region = reference
    for zones in (2, 3, 4):
        seen: dict[str, str] = {}
        for counts in itertools.product((1, 3, 5), (1, 2, 3), (3, 4, 5, 6), (1, 2), (2, 3, 5)):
            keys = ("read_replicas", "pgbouncer", "primaries", "replicas_per_primary", "nodes")
            for h in _hosts(plan, region, zones, **dict(zip(keys, counts))):
                assert seen.setdefault(h.name, h.zone) == h.zone, (zones, counts, h.name)


def test_redis_replicas_avoid_their_primary_zone_and_each_other(reference):
    plan, region = reference
    for zones, primaries, rounds in itertools.product((2, 3, 4), (3, 4, 5, 6, 7), (1, 2, 3)):
        hosts = [h for h in _hosts(plan, region, zones, primaries=primaries, replicas_per_primary=rounds)
                 if h.group == "redis_cluster"]
        zone = {h.name: h.zone for h in hosts}
        replicas: dict[str, list[str]] = {}
        for h in hosts:
            if h.replica_of:
                # two zones and three rounds: a primary in the zone with more primaries has too few replicas across
                if rounds <= zones:
                    assert h.zone != zone[h.replica_of], (zones, primaries, rounds, h.name)
                replicas.setdefault(h.replica_of, []).append(h.zone)
        assert sorted(replicas) == sorted(h.name for h in hosts if not h.replica_of)
        assert all(len(z) == rounds for z in replicas.values())
        if rounds < zones:  # room for every replica of a primary in a zone of its own
            assert all(len(set(z)) == rounds for z in replicas.values()), (zones, primaries, rounds, replicas)


def test_more_replica_rounds_move_no_existing_replica(reference):
    plan, region = reference
    for zones, primaries in itertools.product((2, 3, 4), (3, 4, 5)):
        before = {h.name: h.replica_of for h in _hosts(plan, region, zones, primaries=primaries)}
        after = {h.name: h.replica_of for h in _hosts(plan, region, zones, primaries=primaries,
                                                       replicas_per_primary=2)}
        assert all(after[n] == r for n, r in before.items()), (zones, primaries)


def test_the_reference_placement_is_what_it_was(reference):
    """With as many primaries as zones (the reference), the name-based placement is the earlier one: primary j in
    zone j, its replica in the next zone; PostgreSQL, PgBouncer and Elasticsearch round-robin from the first."""
    plan, region = reference
    zones = [z.name for z in region.zones]
    got = {h.name.removeprefix(f"{plan.spec.organization.name}-{region.name}-"): zones.index(h.zone)
           for h in region.hosts}
    assert got == {"pg-1": 0, "pg-2": 1, "pg-3": 2, "pg-4": 0, "pgbouncer-1": 0, "pgbouncer-2": 1,
                   "redis-1": 0, "redis-2": 1, "redis-3": 2, "redis-4": 1, "redis-5": 2, "redis-6": 0,
                   "es-1": 0, "es-2": 1, "es-3": 2, "bastion-1": 0}
    assert {h.name[-7:]: h.replica_of[-7:] for h in region.hosts if h.group == "redis_cluster" and h.replica_of} \
        == {"redis-4": "redis-1", "redis-5": "redis-2", "redis-6": "redis-3"}
