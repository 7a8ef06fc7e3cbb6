"""etcd's metrics listener (compiler/ir/names.py ETCD_METRICS_PORT): the wiring's connection from Prometheus to every
etcd member, the firewall layers and the scrape job that follow it, `platformc verify` proving it, and the real etcd
3.4 (Debian's etcd-server) answering /metrics and /health there without a client certificate while its client port
still refuses a client without one."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from compiler.ir.names import ETCD_CLIENT_PORT, ETCD_METRICS_PORT, ETCD_SCRAPE_JOB, POSTGRES_EXPORTER_PORT
from compiler.ir.postgres_ha import ETCD_QUOTA_BACKEND_BYTES
from tests.conftest import REPO
from tests.targets.test_ansible import reference_tree  # noqa: F401 (the fixture)
from tests.targets.test_etcd_maintenance import (DEFAULT, HOST, PRIVATE_ADDRESS, Proc, Work, _free_port, _need,
                                                 render)

SCRAPE = f"prometheus->etcd:{ETCD_METRICS_PORT}/tcp"


def _span(cidrs) -> list:
    return list(ipaddress.collapse_addresses(ipaddress.ip_network(x) for x in cidrs))


def _scrape(region):
    return [c for c in region.through("prometheus") if c.dest.name == "etcd"]


def test_prometheus_reaches_every_etcd_member_on_the_metrics_port(reference):
    """One connection per region with a Patroni cluster, from Prometheus's pods (as they reach a VM) to the etcd
    members' hosts on the metrics port, in plain HTTP, through the same layers as the exporters' scrapes."""
    checked = 0
    for r in reference.regions:
        ha = r.postgres_ha
        if ha is None:
            assert not _scrape(r), r.name
            continue
        (c,) = _scrape(r)
        exporter = next(x for x in r.through("prometheus") if x.dest_port == POSTGRES_EXPORTER_PORT
                        and x.dest.name == "postgres")
        assert c.id == SCRAPE and c.dest_port == c.port == ha.etcd_metrics_port == ETCD_METRICS_PORT
        assert set(c.dest.hosts) == set(ha.etcd_fqdns) and c.dest.host_group == ha.etcd_group
        assert (c.source.name, c.source.cidrs) == ("prometheus", exporter.source.cidrs)
        assert set(c.layers) == set(exporter.layers) == {"prometheus", "cloud-firewall", "nftables"}
        assert c.tls == "" and c.app_protocol == "metrics"
        checked += 1
    assert checked >= 12, checked


def test_every_firewall_layer_opens_the_metrics_port_from_the_connection_alone(reference):
    """The hosts' nftables rules (the inventory's common_firewall_rules) and the cloud firewalls (security groups,
    NSGs, GCP firewall rules: the terraform target's ingress rules) of the etcd members' groups admit the metrics
    port from Prometheus's addresses on every cloud, and nothing else opens it: without the connection it is gone."""
    from compiler.targets.ansible.inventory import firewall_rules
    from compiler.targets.terraform.values import ingress_rules
    clouds = set()
    for r in reference.regions:
        if r.postgres_ha is None:
            continue
        (c,) = _scrape(r)
        without = dataclasses.replace(r, wiring=tuple(x for x in r.wiring if x is not c))
        groups = {h.group for h in r.hosts if h.fqdn in c.dest.hosts}
        for group in groups:
            opening = [x for x in firewall_rules(r, group) if ETCD_METRICS_PORT in x["ports"]]
            # (the hosts' rules merge adjacent ranges: compared as the addresses they admit)
            assert _span(s for x in opening for s in x["sources"]) == _span(c.source.cidrs), (r.name, group)
            assert not [x for x in firewall_rules(without, group) if ETCD_METRICS_PORT in x["ports"]], (r.name, group)
            cloud = [x for x in ingress_rules(r)[group] if x["from_port"] == ETCD_METRICS_PORT]
            assert [sorted(x["cidr_blocks"]) for x in cloud] == [sorted(c.source.cidrs)], (r.name, group)
            assert not [x for x in ingress_rules(without).get(group, []) if x["from_port"] == ETCD_METRICS_PORT]
        # hosts that run no etcd member keep the port shut
        for h in r.hosts:
            if h.group not in groups:
                assert not [x for x in firewall_rules(r, h.group) if ETCD_METRICS_PORT in x["ports"]], (r.name, h)
        clouds.add(r.cloud)
    assert clouds == {"aws", "gcp", "azure"}


# ---------------------------------------------------------------- platformc verify

def _generate(out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(REPO / "platform.yaml")).plan
    outputs, _ = emit(plan, ["connections", "ansible", "datastores", "terraform", "helm"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def verify_tree(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("etcd-metrics-verify"))


@pytest.fixture
def tree(verify_tree, tmp_path) -> Path:
    dst = tmp_path / "gen"
    shutil.copytree(verify_tree, dst)
    return dst


def _broken_scrape(root: Path, region: str) -> list:
    from compiler.verify import verify
    return [b for b in verify(root, [region]).broken if b.connection == SCRAPE]


def test_verify_proves_the_scrape_and_names_each_layer_that_drops_it(tree):
    """The unmutated tree proves the connection at every layer; a scrape job without the members, a host group whose
    nftables rules lose the port, and a security group without it are each named."""
    region = "us-east-1"
    assert _broken_scrape(tree, region) == []
    values = tree / f"helm/{region}/kube-prometheus-stack.values.yaml"
    original = values.read_text()
    doc = yaml.safe_load(original)
    jobs = doc["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]
    doc["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"] = [j for j in jobs if j["job_name"] != ETCD_SCRAPE_JOB]
    values.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert {b.layer for b in _broken_scrape(tree, region)} == {"prometheus"}
    values.write_text(original)
    assert _broken_scrape(tree, region) == []

    gv = tree / f"ansible/inventories/{region}/group_vars/postgres_primary.yml"
    data = yaml.safe_load(gv.read_text())
    data["common_firewall_rules"] = [x for x in data["common_firewall_rules"] if ETCD_METRICS_PORT not in x["ports"]]
    gv.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "nftables" in {b.layer for b in _broken_scrape(tree, region)}


def test_verify_names_a_security_group_without_the_metrics_port(tree):
    region = "us-east-1"
    main = tree / f"terraform/regions/{region}/main.tf"
    text = main.read_text()
    block = re.compile(r'\n      \{\n        description = "2381 from prometheus"\n.*?\n      \},', re.S)
    assert block.search(text)
    main.write_text(block.sub("", text))
    assert "cloud-firewall" in {b.layer for b in _broken_scrape(tree, region)}


# ---------------------------------------------------------------- the real etcd

def _get(url: str, context=None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_member_serves_metrics_and_health_without_a_certificate_while_its_client_port_wants_one(
        reference_tree, tmp_path):  # noqa: F811
    """The member runs with the /etc/default/etcd ansible-playbook renders for us-east-1's first member, its
    addresses moved to loopback (the metrics URL's host is the host's private address fact: given, then replaced)
    and a throwaway certificate. Plain HTTP on the metrics port answers /metrics (the series the etcd alerts read,
    the quota as rendered) and /health, with no certificate at all; the client port still refuses a TLS client
    without a certificate, and plain HTTP."""
    etcd, etcdctl = _need("etcd"), _need("etcdctl")
    rendered = render(reference_tree, tmp_path, 0, [DEFAULT])[DEFAULT]
    env = dict(line.split("=", 1) for line in rendered.splitlines() if "=" in line)
    assert env["ETCD_LISTEN_METRICS_URLS"] == f"http://{PRIVATE_ADDRESS}:{ETCD_METRICS_PORT}", rendered
    assert env["ETCD_LISTEN_CLIENT_URLS"].startswith("https://") and env["ETCD_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_LISTEN_CLIENT_URLS"].endswith(f":{ETCD_CLIENT_PORT}")
    w = Work(tmp_path)
    client, peer, metrics = _free_port(), _free_port(), _free_port()
    local = {"ETCD_DATA_DIR": str(tmp_path / "data"),
             "ETCD_LISTEN_CLIENT_URLS": f"https://{HOST}:{client}", "ETCD_ADVERTISE_CLIENT_URLS": f"https://{HOST}:{client}",
             "ETCD_LISTEN_PEER_URLS": f"https://{HOST}:{peer}", "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{HOST}:{peer}",
             "ETCD_INITIAL_CLUSTER": f"{env['ETCD_NAME']}=https://{HOST}:{peer}",
             # the rendered URL with only its host and port replaced: scheme and path as the role writes them
             "ETCD_LISTEN_METRICS_URLS": env["ETCD_LISTEN_METRICS_URLS"].replace(
                 f"{PRIVATE_ADDRESS}:{ETCD_METRICS_PORT}", f"{HOST}:{metrics}")}
    for key in ("ETCD_CERT_FILE", "ETCD_PEER_CERT_FILE", "ETCD_TRUSTED_CA_FILE", "ETCD_PEER_TRUSTED_CA_FILE"):
        local[key] = w.crt
    for key in ("ETCD_KEY_FILE", "ETCD_PEER_KEY_FILE"):
        local[key] = w.key
    assert set(local) <= set(env)
    ctl = [etcdctl, f"--endpoints=https://{HOST}:{client}", f"--cacert={w.crt}", f"--cert={w.crt}", f"--key={w.key}"]
    log = tmp_path / "etcd.log"
    proc = Proc([etcd], log, env={**env, **local})
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctl, "endpoint", "health"], capture_output=True).returncode != 0:
            assert proc.p.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        assert f"recognized and used environment variable ETCD_LISTEN_METRICS_URLS=http://{HOST}:{metrics}" \
            in log.read_text()
        status, text = _get(f"http://{HOST}:{metrics}/metrics")
        assert status == 200, text[:500]
        values = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(etcd_[a-z_]+) (\S+)$", text, re.M)}
        assert values["etcd_server_has_leader"] == 1
        assert values["etcd_server_quota_backend_bytes"] == ETCD_QUOTA_BACKEND_BYTES
        assert 0 < values["etcd_mvcc_db_total_size_in_bytes"] < ETCD_QUOTA_BACKEND_BYTES
        status, text = _get(f"http://{HOST}:{metrics}/health")
        assert status == 200 and '"health":"true"' in text.replace(" ", ""), text
        # the client port: a TLS client that trusts the member but presents no certificate is refused
        ctx = ssl.create_default_context(cafile=w.crt)
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(f"https://{HOST}:{client}/metrics", context=ctx, timeout=10).read()
        # ... and plain HTTP gets no metrics from it
        try:
            status, text = _get(f"http://{HOST}:{client}/metrics")
        except (ConnectionError, urllib.error.URLError, OSError):
            status, text = 0, ""
        assert status != 200 and "etcd_server_has_leader" not in text
        # with a certificate the client port still serves (what Patroni and etcdctl do)
        ctx.load_cert_chain(w.crt, w.key)
        assert "etcd_server_has_leader" in urllib.request.urlopen(f"https://{HOST}:{client}/metrics", context=ctx,
                                                                 timeout=10).read().decode()
    finally:
        proc.stop()
