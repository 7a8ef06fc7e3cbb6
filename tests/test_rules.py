"""One test per schema code and semantic rule: a bad spec gives exactly that code at that line.

Each case patches the two-region fixture (old -> new text) and names a substring of the patched
spec whose first line is where the diagnostic must point.
"""

import re
from pathlib import Path

import pytest

from compiler.errors import SpecError
from compiler.pipeline import compile_text
from compiler.rules import RULES

BASE = (Path(__file__).parent / "cases/two-region/platform.yaml").read_text()

CASES = {
    # schema
    "S001": ([("tag: 1.0.0", "tag: 100")], "tag: 100"),
    "S002": ([("      port: 3000", "      prot: 3000")], "prot: 3000"),
    "S003": ([("      description: Storefront\n", "")], "    web:\n      tier: web"),
    "S004": ([("image: acme/web", "image: Acme/Web")], "image: Acme/Web"),
    "S005": ([("read_replicas: 1", "read_replicas: 99")], "read_replicas: 99"),
    # rules
    "R001": ([("traffic_share: 60, dr_partner", "traffic_share: 50, dr_partner")], "regions:"),
    "R002": ([("traffic_share: 60, settings", "traffic_share: 50, settings")], "americas: {display_name"),
    "R003": ([("    workload_share: 60", "    workload_share: 50")], "workload_share: 50"),
    "R004": ([("  use1:\n", "  Use_1:\n"), ("dr_partner: use1", "dr_partner: Use_1")], "  Use_1:"),
    "R005": ([("{geo: americas,", "{geo: amerika,")], "{geo: amerika,"),
    "R006": ([("    role: primary\n    traffic_share: 40", "    role: standard\n    traffic_share: 40")], "  emea: {display_name"),
    "R007": ([("dr_partner: use1", "dr_partner: nowhere")], "dr_partner: nowhere"),
    "R008": ([("traffic_share: 40, settings", "traffic_share: 40, data_residency: [eu], settings")], "dr_partner: use1"),
    "R009": ([], "dr_partner: euw1"),  # a warning: checked with --strict
    "R010": ([("cidr: 10.21.0.0/16", "cidr: 10.20.128.0/17")], "cidr: 10.20.128.0/17"),
    "R011": ([("tier: api\n      description: Orders", "tier: apix\n      description: Orders")], "tier: apix"),
    "R012": ([("replicas: {min: 2, max: 6}", "replicas: {min: 8, max: 6}")], "replicas: {min: 8, max: 6}"),
    "R013": ([("requests: {cpu: 250m,", "requests: {cpu: 750m,")], "requests: {cpu: 750m,"),
    "R013-gpu": ([("requests: {cpu: \"2\", memory: 4Gi, gpu: 1}", "requests: {cpu: \"2\", memory: 4Gi, gpu: 0}")], "gpu: 0}"),
    "R014": ([("canary_weight: 20", "canary_weight: 30")], "canary_weight: 30"),
    "R015": ([("        min_nodes: 5", "        min_nodes: 2")], "min_nodes: 6\n"),
    "R016": ([("    redis:\n      instance:", "    redis:\n      primaries: 2\n      instance:")], "primaries: 2"),
    "R017": ([("redis: {maxmemory_mb: 2048}", "redis: {maxmemory_mb: 7000}")], "redis: {maxmemory_mb: 7000}"),
    "R018": ([('password: "vault:kv/data/acme/redis#app_password"', 'password: "hunter2"')], 'password: "hunter2"'),
    "R019": ([("  gateway:\n", "  gateway:\n    burst: 10\n")], "burst: 10"),
    "R020": ([("    postgres:\n      instance:", "    postgres:\n      deployment: managed\n      instance:")], "    postgres:\n      deployment"),
    "R021": ([("capacity_franchises: 3000", "capacity_franchises: 500")], "sharding: {"),
    "R023": ([("paths: [/api/orders]", "paths: [/api/orders/../admin]")], "paths: [/api/orders/../admin]"),
    "R024": ([("waf: {rate_limit_per_5min: 300000}", "waf: {rate_limit_per_5min: 3000}")], "waf: {rate_limit_per_5min: 3000}"),
    "R025": ([("  kubernetes:\n    min_nodes: 6", "  kubernetes:\n    version: \"1.29\"\n    min_nodes: 6")], 'version: "1.29"'),
    "R026": ([("waf: {rate_limit_per_5min: 300000}", "waf: {rate_limit_per_5min: 300000}\n  dns: {routing: latency}")], "dns: {routing: latency}"),
    "R027": ([('daily: {cron: "0 1 * * *"', 'daily: {cron: "0 1 1 * MON"')], 'daily: {cron: "0 1 1 * MON"'),
    "R028": ([("retention_days: 365, cold_storage_after_days: 30", "retention_days: 100, cold_storage_after_days: 30")], "retention_days: 100, cold"),
    "R029": ([(", lock_table: acme-tf-locks}", "}")], "state: {bucket: acme-tf-state, region: us-east-1}"),
    "R033": ([("    postgres:\n      instance:", "    postgres:\n      extensions: [vector]\n      instance:")], "extensions: [vector]"),
    "R034": ([("    recommend:\n", "    monitoring:\n")], "    monitoring:\n"),
    "R035": ([("paths: [/api/orders]", "paths: [/healthz]")], "paths: [/healthz]"),
    "R036": ([("hosts: [app.acme.example.org]", "hosts: [www.acme.example.org]")], "hosts: [www.acme.example.org]"),
    "R030": ([("replicas: {min: 1, max: 4}", "replicas: {min: 1, max: 5}")], "        max_nodes: 4"),
    "R031": ([("max_client_conn: 1000", "max_client_conn: 10")], "max_client_conn: 10,"),
    "R032": ([("max_connections: 200", "max_connections: 30")], "max_connections: 30"),
    "R038": ([('"vault:kv/data/acme/orders#db_password"', '"env:ORDERS_DB_PASSWORD"')], "DB_PASSWORD: "),
    # the services' own Redis passwords are kept beside redis.password: an env: one cannot reach their pods
    "R038-redis": ([('password: "vault:kv/data/acme/redis#app_password"', 'password: "env:REDIS_PASSWORD"')],
                   'password: "env:REDIS_PASSWORD"'),
    "R038-vault": ([('traffic_share: 60, settings: {security: {vault_address: "https://vault.acme.example.org"}, ',
                     'traffic_share: 60, settings: {'),
                    ('traffic_share: 40, settings: {security: {vault_address: "https://vault.acme.example.org"}, ',
                     'traffic_share: 40, settings: {')],
                   "DB_PASSWORD: "),
    "R045": ([("rollout: {type: rolling, max_surge: 0, max_unavailable: 25}", "rollout: {type: rolling}")], "        max_nodes: 4"),
    "R046": ([("  gateway:\n    jwt_issuer", "  gateway:\n    rps_per_pod: 1\n    jwt_issuer")], "rps_per_pod: 1"),
    "R047": ([(", canary_image_tag: 2.4.0-rc.1}", "}")], "rollout: {type: canary"),
    "R039": ([("waf: {rate_limit_per_5min: 300000}", "waf: {rate_limit_per_5min: 300000}\n  cdn: {provider: front_door}\n"
                        "  dns: {provider: route53}")], "cdn: {provider: front_door}"),
    "R040": ([("waf: {rate_limit_per_5min: 300000}", "waf: {rate_limit_per_5min: 300000}\n  cdn: {provider: cloud_cdn}")],
             "{geo: americas, cloud: aws"),
    "R041": ([("waf: {rate_limit_per_5min: 300000}", "waf: {rate_limit_per_5min: 300000}\n  cdn: {provider: front_door}\n"
                        "  ddos_protection: true")], "ddos_protection: true"),
    "R042": ([('account: "123456789012"', 'account: "1234567"')], 'account: "1234567"'),
    "R043": ([("sharding: {", "slos: {availability_percent: 99.95, error_rate_percent: 0.1}\nsharding: {")],
             "slos: {availability_percent: 99.95"),
    "R044": ([("monthly: {compute: 5000,", "monthly: {compute: 400,")], "  monthly: {compute: 400,"),
    "R037": ([("    max_nodes: 20\n", "    max_nodes: 5004\n"), ("        max_nodes: 16", "        max_nodes: 5000")],
             "        max_nodes: 5000"),
    "R049": ([('secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}',
                'secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}\n      env: {DB_PASSWORD: plain}')],
             "env: {DB_PASSWORD: plain}"),
    # 26 more GCP regions before euw1 (27 on GCP: 26 peerings per network, one over the limit); the 27th, euw1, is named
    "R053": ([("  euw1:\n", "".join(f"  gcp{i}: {{geo: emea, cloud: gcp, cloud_region: europe-west1, location: X, "
                                     f"traffic_share: 1, dr_partner: euw1, cidr: 10.{100 + i}.0.0/16}}\n"
                                     for i in range(26)) + "  euw1:\n")],
             "    cloud: gcp\n    cloud_region: europe-west1\n    location: Belgium"),
    "R051": ([("      cross_region_standby: false   # the DR partners are on two clouds (R051)\n", "")], "dr_partner: euw1"),
    # both regions keep a standby of the other (R051 also fires: they are on two clouds), and euw1 names its own
    # PgBouncer secret: each partner would log in to the other's promoted standby with the wrong passwords
    "R060": ([("      cross_region_standby: false   # the DR partners are on two clouds (R051)\n", ""),
              ("        redis: {maxmemory_mb: 2048}\n",
               "        redis: {maxmemory_mb: 2048}\n        pgbouncer: {auth_password: \"aws-sm:acme/pgbouncer/auth-euw1\"}\n")],
             "dr_partner: use1"),
    "R050": ([('secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}',
                'secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}\n      env: {STRIPE_API_KEY: hunter2}')],
             "env: {STRIPE_API_KEY: hunter2}"),
    "R052": ([('      clients: {fluent-bit: "vault:kv/data/acme/elasticsearch/fluent-bit", jaeger: "vault:kv/data/acme/elasticsearch/jaeger"}\n', "")],
             "    elasticsearch:\n"),
    "R055": ([("    recommend:\n", "    kibana:\n"), ("      uses: [postgres]\n      depends_on: [orders]",
                                                   "      uses: [postgres, elasticsearch]\n      depends_on: [orders]")],
             "    kibana:\n"),
    # 99 more AWS regions before euw1 (101 regions: 102 CloudFront origins, over the default 100); named at `regions:`.
    # use1's 60 % spread over it and the 99 (0.6 % each), all in its geo and on its cloud
    "R057": ([("capacity_franchises: 3000}", "capacity_franchises: 50500}"),  # 101 shards: one a region
              ("     traffic_share: 60, dr_partner: euw1", "     traffic_share: 0.6, dr_partner: euw1"),
              ("  euw1:\n", "".join(f"  aws{i}: {{geo: americas, cloud: aws, cloud_region: us-east-1, location: X, "
                                     f"traffic_share: 0.6, dr_partner: use1, cidr: 10.{100 + i}.0.0/16}}\n"
                                     for i in range(99)) + "  euw1:\n")],
             "regions:\n"),
    # 75 API path prefixes (none covering another): 75 CloudFront cache behaviors and the default one, over 75
    "R062": ([("routes: [{paths: [/api/orders], methods: [GET, POST]}]",
               "routes: [{paths: [/api/orders, " + ", ".join(f"/api/x{i:02d}" for i in range(74)) + "], methods: [GET, POST]}]")],
             "  services:\n"),
    "R054": ([('      password: "vault:kv/data/acme/redis#app_password"\n',
                '      password: "vault:kv/data/acme/redis#app_password"\n      deployment: managed\n      version: "6.2"\n')],
             '      version: "6.2"'),
    "R010-zones": ([("cidr: 10.21.0.0/16", "cidr: 10.21.0.0/16\n    zones: [europe-west1-b, europe-west1-b, europe-west1-c]")],
                   "zones: [europe-west1-b, europe-west1-b"),
    "R010-newline": ([("cidr: 10.21.0.0/16", 'cidr: 10.21.0.0/16\n    zones: ["europe-west1-b\\nx", europe-west1-c, europe-west1-d]')],
                     "zones: [\"europe-west1-b"),
    "R010-derived": ([("  kubernetes:\n    min_nodes: 6", "  network: {zones: 6}\n  kubernetes:\n    min_nodes: 6")],
                     "cloud_region: us-east-1"),
    # 20,000 GiB: over AWS gp3's 16,384 (use1), within GCP pd-ssd's 65,536 (euw1)
    "R059": ([("    postgres:\n      instance: {vcpus: 4, memory_gib: 32,",
               "    postgres:\n      instance: {vcpus: 4, memory_gib: 32, disk_gib: 20000,")],
             "      instance: {vcpus: 4, memory_gib: 32, disk_gib: 20000,"),
    # DR serving: the partners fail each other over (R070 fires too: they run no standby of each other, R051)
    "R069": ([("sharding: {franchises_per_shard", "disaster_recovery: {failed_over: [use1, euw1]}\nsharding: {franchises_per_shard")],
             "disaster_recovery: {failed_over: [use1, euw1]}"),
    "R070": ([("sharding: {franchises_per_shard", "disaster_recovery: {failed_over: [euw1]}\nsharding: {franchises_per_shard")],
             "disaster_recovery: {failed_over: [euw1]}"),
    "R048": ([("instance_types: {aws: r6i.large, gcp: n2-highmem-2, azure: Standard_E2s_v5}", "instance_types: {aws: r6i.large}")],
             "instance_types: {aws: r6i.large}"),
    # 10 % of use1's requests traced: its spans outgrow half its 3 x 100 GiB Elasticsearch disks; the retention is
    # unset, so the finding sits at the americas geo's monitoring, the layer that set the sampling (more:
    # tests/test_log_volume.py)
    "R073": ([("traffic_share: 60, settings: {security: {vault_address: \"https://vault.acme.example.org\"}, "
               "monitoring: {gateway_access_log: errors, trace_sample_percent: 0.1",
               "traffic_share: 60, settings: {security: {vault_address: \"https://vault.acme.example.org\"}, "
               "monitoring: {gateway_access_log: errors, trace_sample_percent: 10")],
             "americas: {display_name: Americas"),
    # acme-<region>: 43 characters, over the GKE cluster's 40 (more cases: tests/test_cloud_names.py)
    "R064": ([("  euw1:\n", "  europe-west1-belgium-primary-region-x:\n"),
              ("dr_partner: euw1", "dr_partner: europe-west1-belgium-primary-region-x")],
             "  europe-west1-belgium-primary-region-x:"),
}


def _patched(patches):
    text = BASE
    for old, new in patches:
        assert text.count(old) == 1, f"patch target {old!r} must occur exactly once"
        text = text.replace(old, new)
    return text


def _line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, f"anchor {needle!r} must occur exactly once"
    return text[: text.index(needle)].count("\n") + 1


def test_every_rule_has_a_case():
    # R018: the schema; R022: test_registry.py; R056 needs a registry file: tests/targets/test_edge_native_home_routing.py;
    # R058 too: tests/targets/test_home_routing.py; R061 needs an Azure region: test_an_azure_budget_takes_five_...;
    # R063 too: tests/targets/test_cluster_version_support.py; R066 needs a standby cluster, which the two-region
    # fixture's cross-cloud partners cannot have (R051): test_a_promoted_standby_s_pools_must_fit_it; R076-R078 need a
    # deployed-facts lock: tests/test_deployed_lock.py
    locked = {"R076", "R077", "R078"}
    assert {r.code for r in RULES} - {"R018", "R022", "R056", "R058", "R061", "R063", "R066"} - locked <= set(CASES)


def test_fixture_is_valid():
    compiled = compile_text(BASE, "platform.yaml")
    assert {w.code for w in compiled.warnings} == {"R009"}  # cross-cloud DR partners, on purpose


PLAN_WARNINGS = {r.code for r in RULES if r.stage == "plan" and r.severity == "warning"}


@pytest.mark.parametrize("code", sorted(CASES))
def test_bad_spec_gives_code_at_line(code):
    patches, anchor = CASES[code]
    text = _patched(patches)
    code = code.split("-")[0]  # "R013-gpu" is a second case of R013
    expected = _line_of(text, anchor)
    if code in PLAN_WARNINGS:  # strict would stop at the fixture's own R009 warnings before plan rules run
        compiled = compile_text(text, "platform.yaml")
        hits = [(w.code, w.line) for w in compiled.warnings]
        assert (code, expected) in hits, f"expected {code} at line {expected}, got {hits}"
        return
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml", strict=(code in ("R009", "R024", "R025", "R033", "R036", "R043", "R053")))
    hits = [(d.code, d.line) for d in exc.value.diagnostics]
    assert (code, expected) in hits, f"expected {code} at line {expected}, got {hits}"
    for d in exc.value.diagnostics:  # the printed form is the documented one
        assert d.format().startswith(f"platform.yaml:{d.line}:{d.col}: {d.path}: ")


def test_unknown_key_suggests_the_closest_field():
    text = _patched([("      port: 3000", "      prot: 3000")])
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    (d,) = [d for d in exc.value.diagnostics if d.code == "S002"]
    assert d.path == "settings.services.web.prot"
    assert "did you mean 'port'?" in d.message


def test_unknown_key_in_an_override_points_at_the_override():
    text = _patched([("redis: {maxmemory_mb: 2048}", "redis: {maxmemroy_mb: 2048}")])
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    (d,) = exc.value.diagnostics
    assert (d.code, d.line, d.path) == ("S002", _line_of(text, "maxmemroy_mb"), "regions.euw1.settings.datastores.redis.maxmemroy_mb")
    assert "did you mean 'maxmemory_mb'?" in d.message


def test_region_findings_name_the_regions():
    text = _patched(CASES["R016"][0])
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    (d,) = [d for d in exc.value.diagnostics if d.code == "R016"]  # one line for both regions
    assert d.message.endswith("(region euw1, use1)")


def test_warnings_pass_without_strict():
    compiled = compile_text(BASE)
    assert [w.severity for w in compiled.warnings] == ["warning", "warning"]
    assert all("warning [R009]" in w.format() for w in compiled.warnings)


def test_a_region_name_with_a_trailing_newline_is_refused():
    text = _patched([("  use1:\n", '  "use1\\n":\n'), ("dr_partner: use1", 'dr_partner: "use1\\n"')])
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    assert "R004" in [d.code for d in exc.value.diagnostics]


def test_r020_timescaledb_on_azure_follows_the_postgresql_version():
    """Azure's flexible server offers TimescaleDB up to PostgreSQL 16: 17 is refused at the extension, 16 passes."""
    text = (Path(__file__).parent / "cases/azure-only/platform.yaml").read_text()
    old = "extensions: [vector, pg_partman, pg_stat_statements]"
    assert text.count(old) == 1
    bad = text.replace(old, "extensions: [vector, pg_partman, pg_stat_statements, timescaledb]")
    with pytest.raises(SpecError) as exc:
        compile_text(bad, "platform.yaml")
    hits = [(d.code, d.line) for d in exc.value.diagnostics]
    assert ("R020", _line_of(bad, "extensions: [vector, pg_partman, pg_stat_statements, timescaledb]")) in hits
    assert "up to version 16" in exc.value.diagnostics[0].message
    compile_text(bad.replace("version: 17", "version: 16"), "platform.yaml")


def test_r024_names_the_waf_field():
    text = _patched(CASES["R024"][0])
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml", strict=True)
    (d,) = [d for d in exc.value.diagnostics if d.code == "R024"]
    assert d.path == "edge.waf.rate_limit_per_5min"
    assert "edge.waf.rate_limit_per_5min 3000" in d.message and "raise it to at least" in d.message


def test_r042_refuses_a_subscription_id_that_is_not_a_guid():
    text = (Path(__file__).parent / "cases/azure-only/platform.yaml").read_text()
    bad = text.replace("account: 3b1f0c2e-8d4a-4f6b-9c7e-1a2b3c4d5e6f", "account: acme-subscription")
    with pytest.raises(SpecError) as exc:
        compile_text(bad, "platform.yaml")
    assert ("R042", _line_of(bad, "account: acme-subscription")) in [(d.code, d.line) for d in exc.value.diagnostics]


WARNING_CODES = ("R009", "R024", "R025", "R033", "R036", "R043", "R053")
DIRECTIVE = re.compile(r"[:;,(] ?(set|raise|lower|add|change|list|remove|write|use|pick|give|name|rename|choose|put|"
                       r"pair|drop|shrink|move|quote) ")


@pytest.mark.parametrize("code", sorted(c for c in CASES if c.startswith("R") and c != "R044"))  # R044: test_cost
def test_messages_say_what_to_change(code):
    """Every rule message ends in what to change (issue #15: R003, R015 and R021 once only stated the problem)."""
    patches, _ = CASES[code]
    rule = code.split("-")[0]
    if rule in PLAN_WARNINGS:  # as in test_bad_spec_gives_code_at_line: strict would stop at the fixture's R009
        diagnostics = compile_text(_patched(patches), "platform.yaml").warnings
    else:
        with pytest.raises(SpecError) as exc:
            compile_text(_patched(patches), "platform.yaml", strict=rule in WARNING_CODES)
        diagnostics = exc.value.diagnostics
    messages = [d.message for d in diagnostics if d.code == rule]
    assert messages, [d.format() for d in diagnostics]
    assert all(DIRECTIVE.search(m) for m in messages), messages


def test_r060_leaves_a_partner_that_runs_no_standby_alone():
    """A partner with managed PostgreSQL runs no standby cluster (postgres_ha.plan: none), so its PgBouncer never
    logs in to a promoted copy: different secrets are fine there (R060 refused such a spec, review finding)."""
    text = _patched(CASES["R060"][0])
    assert "R060" in {d.code for d in pytest.raises(SpecError, compile_text, text, "platform.yaml").value.diagnostics}
    managed = text.replace("        pgbouncer: {auth_password:", "        postgres: {deployment: managed}\n        pgbouncer: {auth_password:")
    assert managed != text
    try:
        compile_text(managed, "platform.yaml")
        codes = set()
    except SpecError as exc:
        codes = {d.code for d in exc.diagnostics}
    assert "R060" not in codes, codes


def test_an_azure_budget_takes_five_notifications_at_most():
    """R061: an Azure budget refuses a sixth notification (the forecast's is one) and a threshold over 1,000 %, at
    apply, in every Azure region; the spec is refused at validate, the position on the list."""
    from tests.conftest import REPO
    text = (REPO / "tests/cases/azure-only/platform.yaml").read_text()
    anchor = "cost:\n"
    bad = text.replace(anchor, anchor + "  alert_thresholds_percent: [50, 70, 80, 90, 1100]\n", 1)
    diagnostics = pytest.raises(SpecError, compile_text, bad, "platform.yaml").value.diagnostics
    found = [d for d in diagnostics if d.code == "R061"]
    assert len(found) == 2, [d.format() for d in diagnostics]
    line = bad[: bad.index("alert_thresholds_percent")].count("\n") + 1
    assert all(f"platform.yaml:{line}:" in d.format() for d in found), [d.format() for d in found]
    ok = text.replace(anchor, anchor + "  alert_thresholds_percent: [50, 80, 100, 150]\n", 1)
    compile_text(ok, "platform.yaml")


def test_a_promoted_standby_s_pools_must_fit_it():
    """R066: the aws-only fixture's partners run each other's standby. With a reserve pool of 15, use1's own pools fit
    (2 hosts x 4 shards share 180 connections: 45 each) but, once promoted in euw1, its 8 runbook lines (4 shards and
    their read-only names) on euw1's 2 PgBouncer hosts leave 11 each, under the reserve: refused at use1's
    max_connections, and only there (euw1's 2 shards give 4 lines, 22 each)."""
    from tests.conftest import REPO
    text = (REPO / "tests/cases/aws-only/platform.yaml").read_text()
    compile_text(text, "platform.yaml")
    bad = text.replace("pgbouncer: {max_client_conn: 1000,", "pgbouncer: {max_client_conn: 1000, reserve_pool_size: 15,", 1)
    assert bad != text
    diagnostics = pytest.raises(SpecError, compile_text, bad, "platform.yaml").value.diagnostics
    assert [(d.code, d.line) for d in diagnostics] == [("R066", _line_of(bad, "max_connections: 200"))], \
        [d.format() for d in diagnostics]
    assert "once its standby in euw1 is promoted" in diagnostics[0].message
    assert DIRECTIVE.search(diagnostics[0].message)
