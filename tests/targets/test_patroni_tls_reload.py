"""PostgreSQL serves its renewed certificate: the renewal timer of the PostgreSQL certificate reloads Patroni.

PostgreSQL reads ssl_cert_file at start and on a configuration reload only. Under Patroni the reload goes through
Patroni: Debian's patroni@.service reloads with SIGHUP (ExecReload), and Patroni 3.0 answers a SIGHUP by reloading
PostgreSQL. So the tls role's renewal service for /etc/postgresql/tls (platformc-tls-renew DIR CA DAYS UNIT...) must
name every Patroni instance of the host that serves that certificate: the region's member
(patroni@<version>-main) and each DR standby cluster the host runs (patroni@<instance>).

1. The generated postgresql role gives the tls role exactly those units (evaluated with Ansible's own templating,
   for every PostgreSQL host of the reference, against the inventory's standby clusters).
2. For real, inside `unshare -n` as postgres (tests/targets/patroni_tls_reload_harness.py): one etcd member and one
   Patroni member from the generated group_vars; the certificate file is replaced as the renewal replaces it
   (rename over it); PostgreSQL still serves the old certificate (the defect: nothing reloads it); then each unit
   the role names is reloaded as systemd would (the unit file's ExecReload with $MAINPID), and PostgreSQL serves the
   new certificate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from tests.targets.test_datastores_support import (AS_POSTGRES, ISOLATE, _need, postgres_hosts, private_dir,
                                                   require_patroni_cluster)

REGION = "us-east-1"  # it runs standby clusters of its DR partners too
HARNESS = Path(__file__).with_name("patroni_tls_reload_harness.py")
PATRONI_UNIT = Path("/lib/systemd/system/patroni@.service")


@pytest.fixture(scope="module")
def generated(reference):
    gen = private_dir("ptls-gen-")
    outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(gen, outputs["generated"], None))
    yield gen
    shutil.rmtree(gen, ignore_errors=True)


def _tls_include(gen: Path) -> dict:
    tasks = yaml.safe_load((gen / "ansible/roles/postgresql/tasks/main.yml").read_text())
    (include,) = [t for t in tasks if (t.get("ansible.builtin.include_role") or {}).get("name") == "tls"]
    return include


def _template(value, variables: dict):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    templar = Templar(loader=DataLoader(), variables=variables)
    for _ in range(5):  # role vars refer to role vars
        value = templar.template(trust_as_template(value) if isinstance(value, str) else value)
    return value


def _units(gen: Path, region: str, host: str) -> list[str]:
    include = _tls_include(gen)
    role = gen / "ansible/roles/postgresql"
    variables = {**yaml.safe_load((role / "defaults/main.yml").read_text()),
                 **yaml.safe_load((gen / f"ansible/inventories/{region}/group_vars/postgres.yml").read_text()),
                 **yaml.safe_load((role / "vars/main.yml").read_text()), "inventory_hostname": host}
    return list(_template(include["vars"]["tls_reload_units"], variables))


def test_the_postgresql_renewal_reloads_every_patroni_instance_of_the_host(generated, reference):
    assert "tls_reload_units" in _tls_include(generated)["vars"], "the PostgreSQL certificate's renewal reloads nothing"
    patroni_tasks = (generated / "ansible/roles/patroni/tasks/main.yml").read_text()
    assert "name: patroni@{{ postgresql_version }}-main\n" in patroni_tasks  # the unit the patroni role starts
    seen_standby = False
    for region in (r.name for r in reference.regions if r.postgres_ha is not None):
        gv = yaml.safe_load((generated / f"ansible/inventories/{region}/group_vars/postgres.yml").read_text())
        for host in postgres_hosts(generated, region):
            standbys = [s["instance"] for s in gv.get("patroni_standby_clusters") or [] if host in s["hosts"]]
            seen_standby |= bool(standbys)
            assert _units(generated, region, host) == [f"patroni@{v}.service" for v in ["15-main", *standbys]], host
    assert seen_standby, "no host of the reference runs a standby cluster: the test would not see one"


def test_a_renewed_certificate_is_served_after_the_renewal_reloads_patroni(generated):
    python = require_patroni_cluster()
    _need(PATRONI_UNIT.is_file(), f"{PATRONI_UNIT} is missing (Debian's patroni package)")
    host = postgres_hosts(generated, REGION)[0]
    units = _units(generated, REGION, host)
    work = private_dir("ptls-")
    try:
        res = subprocess.run(ISOLATE + AS_POSTGRES + [python, str(HARNESS), str(generated), REGION, host, str(work),
                                                      json.dumps(units)], capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert res.returncode == 0, f"the harness failed:\n{res.stderr[-6000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print("\ncertificate reload:", json.dumps(out, indent=1), file=sys.stderr)
    assert out["served_at_start"] == out["old"]
    assert out["served_after_replace"] == out["old"], "PostgreSQL picked the new file up without a reload?"
    assert out["reloaded"] == [f"patroni@{out['instance']}.service"]
    assert out["served_after_reload"] == out["new"] != out["old"], out
