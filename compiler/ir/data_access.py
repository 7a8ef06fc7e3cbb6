"""Each service's access to the data tier: its PostgreSQL role, its Redis ACL user, its credentials and
the connection settings it is given (computed once by compiler/resolve.py into RegionPlan.data_access).

PostgreSQL: one LOGIN role per service that `uses: [postgres]`, named `svc_<service>` (hyphens become
underscores). In each shard database of its region it may connect, owns a schema of the same name (the
default search_path `"$user", public` finds it) and may only SELECT the routing table; nothing else in
the database is granted to it, and CONNECT to the shard databases is revoked from PUBLIC. Clients reach
it through PgBouncer only, whose auth_query returns exactly these roles' secrets.

Redis: one ACL user per service that `uses: [redis]`, named after the service, with the keys and
channels `<service>:*` only, the data commands (no @dangerous ones) and the commands client libraries
send on their own: the handshake and health checks (HELLO, AUTH, PING, ECHO, CLIENT SETNAME/GETNAME/ID,
SETINFO from Redis 7.2), cluster discovery (CLUSTER SLOTS/SHARDS/NODES/INFO/MYID, COMMAND, INFO) and
replica reads (READONLY, READWRITE, ASKING).

Elasticsearch (self-managed): one user per service that `uses: [elasticsearch]`, named after the service, with
its own role `platformc_svc_<service>` (the ansible target's elasticsearch role creates both through the security
API, as it does for Fluent Bit and Jaeger). Indices: exactly `<service>_*` (ELASTICSEARCH_INDEX_PREFIX is
`<service>_`; a service name has no `_`, so `location_*` never covers `location-history_...`, nor a Fluent Bit or
Jaeger index, `<prefix>-<region>-...`, nor a built-in data-stream pattern such as `logs-*-*`), with create_index
(explicit or on first write), write (documents, bulk, dynamic mapping updates), read (search, get, scroll),
view_index_metadata (index exists, get mapping) and delete_index (dropping and rebuilding its own indices).
Not granted: `manage` (aliases, explicit put-mapping, settings), so alias swaps need a platform operator. Cluster:
`monitor` only, which the client libraries need by themselves: ping and the product check (HEAD/GET /,
cluster:monitor/main), sniffing the nodes (GET _nodes/http) and cluster health all require it. Its password
follows the convention below from the entry `elasticsearch_ref` names (the sibling entry `elasticsearch` of the
PgBouncer auth reference, in the same store), e.g. `vault:secret/data/platform/elasticsearch#location_password`.
The client verifies the nodes' certificates against the region's internal CA, the same `<service>-internal-ca`
Secret as for PgBouncer (ELASTICSEARCH_CA_CERT names the file).
Managed search (`deployment: managed`, Amazon OpenSearch Service, AWS only: rule R020 refuses it elsewhere): no user,
password or CA is made here. Each service signs its requests (SigV4, service `es`) as its own IAM role (IRSA,
compiler/ir/identity.py), ELASTICSEARCH_AUTH_MODE=aws-sigv4 (ES_AUTH), with ELASTICSEARCH_INDEX_PREFIX `<service>_`,
ELASTICSEARCH_DOMAIN_NAME and ELASTICSEARCH_AWS_REGION (the signing region). SearchGrant: the role's own policy and
the domain access policy both allow exactly es:ESHttp{Delete,Get,Head,Post,Put} on `domain/<name>/<service>_*` and
es:ESHttp{Get,Head} on the root path (`domain/<name>/`: ping, info) and `_cluster/health`. Access is IAM only:
fine-grained access control is off, because with it an IAM role gets in only through an OpenSearch role mapping
(security REST API) that the AWS provider cannot write; IAM authorizes the request URL, so the domain refuses
explicit indices in _bulk/_mget/_msearch bodies (rest.action.multi.allow_explicit_index=false) and denies the
services' roles the paths a prefix pattern would let through to another index (OPENSEARCH_DENIED_PATHS). Not
granted: sniffing (GET _nodes/http; a managed domain's nodes are not reachable), scroll/point-in-time continuation
(root paths; search_after instead), aliases. The services dial `elasticsearch.<internal domain>`: a CNAME to the
domain's endpoint and the domain's custom endpoint, whose ACM certificate (DNS-validated in the public zone, which
holds the internal domain) names it, so clients verifying the hostname accept it.

Passwords are references, never values, derived from the datastore's own reference by one documented
convention (`service_ref`): the same store and entry, the field `<service>_password`; a reference
without a field gets `-<service>` (aws-sm: `/<service>`) appended to its name, an `env:` one
`_<SERVICE>`. Ansible sets them on the servers; the External Secrets Operator delivers them into the
service's `<service>-datastores` Secret; `<service>-datastores` is also the ConfigMap of its connection
settings (both mounted with envFrom).

TLS to PgBouncer is verified: PGSSLMODE=verify-full against the region's internal CA (the one the tls role
creates on the bastion and signs every data host's certificate with), whose public certificate each service
that uses postgres gets as the Secret `<service>-internal-ca` (key `ca.crt`), mounted read-only at
INTERNAL_CA_DIR; PGSSLROOTCERT names the file. PgBouncer's certificate names the host the pods dial,
`pgbouncer.<internal domain>` (the Ansible inventory's pgbouncer_tls_names). The CA exists only once Ansible
has run, so neither Terraform nor a static manifest can hold it: Ansible's pgbouncer role publishes it to the
store entry `internal_ca_ref` names (the same store as the service passwords, one entry per region, the field
`ca_crt`), and the External Secrets Operator delivers it like every other Secret (the pods wait for the
volume until then; a renewed CA reaches them within ESO's refresh interval).

Managed Redis (`datastores.redis.deployment: managed`): each service that uses redis authenticates as its own
cloud identity (compiler/ir/identity.py), never with a password, so no password is delivered (REDIS_PASSWORD is
absent) and the ConfigMap's REDIS_AUTH_MODE says how (REDIS_AUTH):
- AWS ElastiCache: `aws-iam`. An RBAC user per service with IAM authentication (user id = user name =
  `<cluster>-<service>`, unique in the account and region as IAM requires), its access string the ACL rules
  below (`~<service>:* &<service>:* -@all ...`), in the cache's user group beside a disabled `default` user; the
  service's IAM role may elasticache:Connect as exactly that user to exactly that replication group. The client
  signs an IAM auth token (SigV4, service elasticache) for REDIS_CACHE_NAME (the replication group) and user
  REDIS_USERNAME and sends it as the password (valid 15 min; ElastiCache closes a connection after 12 h).
- GCP Memorystore for Redis Cluster: `gcp-iam`. The service's Google service account gets
  roles/redis.dbConnectionUser on the project, conditioned on the cluster's resource name (the narrowest the
  API allows: there is no per-cluster IAM policy). The client sends an OAuth access token of the service
  account with AUTH. Memorystore IAM authentication has no key-prefix or command ACL: every principal allowed
  to connect may run every data command on every key; REDIS_KEY_PREFIX is a convention there, not enforced.
  The cluster's server CA (TRANSIT_ENCRYPTION_MODE_SERVER_AUTHENTICATION) is written by Terraform to the
  Secret Manager entry `redis_server_ca_ref` names (public material), delivered by ESO into the Secret
  `<service>-redis-ca` (key ca.crt) mounted at REDIS_CA_DIR; REDIS_TLS_CA_FILE names the file.
- Azure Cache for Redis: `entra-id`. A custom data access policy per service (Redis ACL syntax: its commands
  and `~<service>:*`) assigned to its user-assigned identity (object id, alias = REDIS_USERNAME); access keys are
  disabled. The cache runs Redis 6.0 (AZURE_REDIS_ENGINE): its commands are those of 6.0 and it has no channel
  ACL (`&` patterns came with 6.2), so pub/sub channels are not restricted per service there. The client
  sends the identity's object id and an Entra ID token (scope https://redis.azure.com/.default) with AUTH.
"""

from __future__ import annotations

import functools

from compiler.records import dataclass
from typing import Mapping

from compiler.ir.names import (DATASTORE_SETTINGS_SUFFIX, ELASTICSEARCH_HTTP_PORT, KONG_PROXY_TLS_KEYS, SHARD_MAP_TABLE,
                               fit)

ROLE_PREFIX = "svc_"
# Environment variables of the connection settings (ConfigMap) and credentials (Secret).
PG_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "sslmode": "PGSSLMODE",
          "databases": "PG_SHARD_DATABASES", "shard_map": "PG_SHARD_MAP_TABLE", "password": "PGPASSWORD"}
REDIS_ENV = {"nodes": "REDIS_CLUSTER_NODES", "user": "REDIS_USERNAME", "prefix": "REDIS_KEY_PREFIX",
             "tls": "REDIS_TLS", "password": "REDIS_PASSWORD"}
ES_ENV = {"urls": "ELASTICSEARCH_URLS"}
BUCKET_ENV = {"bucket": "OBJECT_STORAGE_BUCKET", "cloud": "OBJECT_STORAGE_CLOUD"}

# Redis commands a service user may run. Data: every read/write/transaction/pub-sub command except the
# @dangerous ones (KEYS, FLUSHALL, ...); scripts with declared keys. Then what client libraries send by
# themselves, which the categories above do not hold or @dangerous removes (INFO, CLUSTER ...).
# TIME is in no ACL category (Redis 7.0's time.json): a script that reads the server's clock (rate limiters,
# locks) failed with "The user executing the script can't run this command".
REDIS_DATA_RULES = ("-@all", "+@read", "+@write", "+@transaction", "+@pubsub", "-@dangerous",
                    "+eval", "+evalsha", "+eval_ro", "+evalsha_ro", "+script|load", "+script|exists", "+time")
REDIS_CLIENT_COMMANDS = ("+auth", "+hello", "+ping", "+echo", "+quit", "+reset",
                         "+client|setname", "+client|getname", "+client|id", "+client|info",
                         "+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info", "+cluster|myid",
                         "+cluster|keyslot", "+command", "+info", "+readonly", "+readwrite", "+asking")
REDIS_SEEDS = 2  # seeds given to cluster clients (Redis, Elasticsearch): one per zone of the first two
REDIS_72_COMMANDS = ("+client|setinfo",)  # CLIENT SETINFO (lib-name, lib-ver) exists from Redis 7.2 on
# The region's internal CA certificate in the pods: Secret <service>-internal-ca, key ca.crt, mounted here.
INTERNAL_CA_SUFFIX = "-internal-ca"
INTERNAL_CA_KEY = "ca.crt"
INTERNAL_CA_FIELD = "ca_crt"  # the store entry's field (ESO reads a dotted property as a JSON path)
INTERNAL_CA_DIR = "/etc/platformc/internal-ca"
PG_ENV["sslrootcert"] = "PGSSLROOTCERT"
# libpq waits for a connection without limit unless told (connect_timeout unset), and tries the next address a name
# resolves to only after that: PgBouncer's name is one A record per host, so with a host gone (its packets dropped,
# a zone lost) about half of new connections hung for the kernel's TCP timeout (~2 min). A limit per address moves
# them on to the live one (libpq: the timeout applies separately to each host name or IP address).
PG_ENV["connect_timeout"] = "PGCONNECT_TIMEOUT"
PG_CONNECT_TIMEOUT_SECONDS = 5
# Managed Redis: how each service authenticates (REDIS_AUTH_MODE), per cloud; self-managed: an ACL password
REDIS_AUTH = {"self-managed": "password", "aws": "aws-iam", "gcp": "gcp-iam", "azure": "entra-id"}
REDIS_ENV["auth"] = "REDIS_AUTH_MODE"
REDIS_ENV["cache"] = "REDIS_CACHE_NAME"  # the managed cache (AWS: the replication group an IAM token is signed for)
REDIS_ENV["ca_file"] = "REDIS_TLS_CA_FILE"  # GCP: the cluster's server CA (Memorystore's own CA, not a public one)
REDIS_CA_SUFFIX = "-redis-ca"  # Secret <service>-redis-ca, key INTERNAL_CA_KEY, mounted at REDIS_CA_DIR
REDIS_CA_DIR = "/etc/platformc/redis-ca"
AZURE_REDIS_ENGINE = "6.0"  # Azure Cache for Redis (redis_version 6) runs Redis 6.0 whatever the spec's version
ELASTICACHE_USER_MAX = 40  # ElastiCache user ids: letters, digits, single hyphens
# Commands (and subcommands) newer than some Redis versions: left out of a user's rules below that version
# (Redis refuses an ACL rule naming a command it does not know).
REDIS_SINCE = {"+reset": (6, 2), "+client|info": (6, 2), "+eval_ro": (7, 0), "+evalsha_ro": (7, 0),
               "+cluster|shards": (7, 0)}


@dataclass(frozen=True)
class DbRole:
    """A service's PostgreSQL role."""

    service: str
    name: str  # svc_<service>
    schema: str  # its own schema in each shard database (= name, so "$user" in search_path finds it)
    databases: tuple[str, ...]  # the region's shard databases: CONNECT, its schema
    shard_map: str  # the routing table: SELECT only
    password_ref: str


@dataclass(frozen=True)
class RedisUser:
    """A service's Redis ACL user."""

    service: str
    name: str
    key_pattern: str  # ~<service>:*
    channel_pattern: str  # &<service>:*
    commands: tuple[str, ...]
    password_ref: str  # "" when the user authenticates as a cloud identity (managed Redis)
    auth: str = "password"  # REDIS_AUTH: password | aws-iam | gcp-iam | azure: entra-id
    identity: str = ""  # the owner of the cloud identity it authenticates as (compiler/ir/identity.py), "" = none
    cache: str = ""  # the managed cache's name (AWS replication group, GCP cluster, Azure cache); "" = self-managed

    @property
    def rules(self) -> str:
        """The ACL rules after `user <name> on #<hash>` (reset first, so a changed rule set replaces the old)."""
        return " ".join(("resetkeys", self.key_pattern, "resetchannels", self.channel_pattern, *self.commands))

    @property
    def access_string(self) -> str:
        """The same grants for a managed cache's user or access policy: keys, channels (when the engine has a
        channel ACL), commands; the cache starts each user from nothing, so no reset is needed."""
        return " ".join(p for p in (self.key_pattern, self.channel_pattern, *self.commands) if p)


@dataclass(frozen=True)
class ServiceDataAccess:
    """Everything one service needs to reach the data tier, and what creates it."""

    service: str
    namespace: str
    name: str  # the Secret and the ConfigMap: <service>-datastores
    db_role: DbRole | None
    redis_user: RedisUser | None
    settings: Mapping[str, str]  # ConfigMap data (env var -> value)
    secrets: tuple[tuple[str, str], ...]  # (Secret key = env var, reference)
    ca_ref: str = ""  # the region's internal CA certificate (public), for verify-full to PgBouncer; "" = none needed
    ca_secret: str = ""  # the Secret that holds it (key INTERNAL_CA_KEY), mounted at INTERNAL_CA_DIR
    redis_ca_ref: str = ""  # GCP managed Redis: the cluster's server CA (Terraform writes it); "" = none needed
    redis_ca_secret: str = ""  # the Secret that holds it (key INTERNAL_CA_KEY), mounted at REDIS_CA_DIR
    es_user: ElasticsearchUser | None = None  # self-managed Elasticsearch: its user and role (the module docstring)
    search_grant: SearchGrant | None = None  # managed search (OpenSearch): what its IAM role may reach (docstring)


def role_name(service: str) -> str:
    return ROLE_PREFIX + service.replace("-", "_")


def service_ref(ref: str, service: str) -> str:
    """The reference of a service's password, from the datastore's reference (the convention above)."""
    scheme, _, rest = ref.partition(":")
    if scheme == "env":
        return f"env:{rest}_{service.upper().replace('-', '_')}"
    entry, hash_, _field = rest.partition("#")
    if hash_:
        return f"{scheme}:{entry}#{service.replace('-', '_')}_password"
    return f"{scheme}:{entry}{'/' if scheme == 'aws-sm' else '-'}{service}"


def internal_ca_ref(ref: str, region: str) -> str:
    """The store entry of a region's internal CA certificate, beside the datastore reference `ref` (the same
    store): vault:<mount>/data/<dir>/internal-ca/<region>#ca_crt, aws-sm:<dir>/internal-ca/<region>#ca_crt,
    gcp-sm:internal-ca-<region>#ca_crt, azure-kv:<vault>/internal-ca-<region>#ca_crt, env:INTERNAL_CA_<REGION>."""
    scheme, _, rest = ref.partition(":")
    entry = rest.partition("#")[0]
    if scheme == "env":
        return "env:INTERNAL_CA_" + region.upper().replace("-", "_")
    if scheme in ("vault", "aws-sm"):
        parent = entry.rpartition("/")[0]
        return f"{scheme}:{parent + '/' if parent else ''}internal-ca/{region}#{INTERNAL_CA_FIELD}"
    if scheme == "azure-kv":
        return f"azure-kv:{entry.partition('/')[0]}/internal-ca-{region}#{INTERNAL_CA_FIELD}"
    return f"{scheme}:internal-ca-{region}#{INTERNAL_CA_FIELD}"


def kong_proxy_tls_ref(settings, region: str, field: str) -> str:
    """The store entry of Kong's serving certificate for the Azure Application Gateway's hop (compiler/ir/edge.py,
    kong_proxy_tls), beside the region's internal CA entry (the same store, a sibling entry `kong-proxy-tls`),
    field `field` (tls_crt, tls_key): vault:<mount>/data/<dir>/kong-proxy-tls/<region>#<field>,
    aws-sm:<dir>/kong-proxy-tls/<region>#<field>, gcp-sm:kong-proxy-tls-<region>#<field>,
    azure-kv:<vault>/kong-proxy-tls-<region>#<field>, env:KONG_PROXY_TLS_<REGION>_<FIELD>."""
    ca = region_ca_ref(settings, region)
    scheme, _, rest = ca.partition(":")
    if scheme == "env":
        return f"env:KONG_PROXY_TLS_{region.upper().replace('-', '_')}_{field.upper()}"
    entry = rest.partition("#")[0].replace("internal-ca", "kong-proxy-tls")
    return f"{scheme}:{entry}#{field}"


def kong_proxy_tls_refs(cloud: str, settings, region: str) -> tuple[tuple[str, str], ...]:
    """(Secret key, store reference) of Kong's serving certificate for the Application Gateway (compiler/ir/edge.py,
    kong_proxy_tls), for each of KONG_PROXY_TLS_KEYS (the field: the key with `_` for `.`); () outside Azure (the other
    clouds' load balancers do not verify Kong's certificate). The cluster's ESO reads them (its identity's paths)."""
    if cloud != "azure":
        return ()
    return tuple((key, kong_proxy_tls_ref(settings, region, key.replace(".", "_"))) for key in KONG_PROXY_TLS_KEYS)


def region_ca_ref(settings, region: str) -> str:
    """The store entry of the region's internal CA certificate: beside PgBouncer's auth password, in its store (every
    reader of the CA, the services' PostgreSQL clients and the Elasticsearch shippers, reads this one entry)."""
    return internal_ca_ref(settings.datastores.pgbouncer.auth_password, region)


def published_ca_ref(region) -> str:
    """The store entry a region's internal CA certificate is published to (the pgbouncer role writes it, ESO delivers
    it to the pods, a DR partner's standby cluster reads it to verify this region's servers); "" when nothing of the
    region reads it (no PostgreSQL client, no shipper to its own Elasticsearch nodes): nothing is published then."""
    ref = region_ca_ref(region.settings, region.name)
    if any(a.ca_ref for a in region.data_access):
        return ref
    from compiler.ir.identity import cluster_secret_refs  # the shippers' Secrets read it too
    return ref if ref in cluster_secret_refs(region.settings, region.services, region.name) else ""


def ca_sources(plan, region) -> list[str]:
    """The other regions whose published internal CA certificate (published_ca_ref) the region's Ansible reads, in
    spec order: each region it keeps a DR standby cluster for (the standby verifies the source's servers) and, where
    its own cluster has a split-brain fence, its DR partner (the fence verifies the partner's standby members). Each
    is written by that region's pgbouncer play, so on a new DR pair's first run those plays go first: site.yml runs
    postgresql.yml before pgbouncer.yml, in both regions."""
    from compiler.ir.postgres_ha import FENCE_LAYER
    names = {sb.of_region for sb in getattr(region.postgres_ha, "standbys", ())}
    if region.through(FENCE_LAYER):
        names.add(region.dr_partner)
    return [r.name for r in plan.regions if r.name in names and r.name != region.name and published_ca_ref(r)]


@functools.lru_cache(maxsize=64)  # one tuple per Redis version, shared by every service of every region
def redis_commands(version: str) -> tuple[str, ...]:
    major, minor = (int(x) for x in version.split(".")[:2])
    extra = REDIS_72_COMMANDS if (major, minor) >= (7, 2) else ()
    return tuple(c for c in REDIS_DATA_RULES + REDIS_CLIENT_COMMANDS + extra
                 if REDIS_SINCE.get(c, (0, 0)) <= (major, minor))


def managed_redis_name(cloud: str, cluster: str) -> str:
    """The managed cache's name as the Terraform module names it: the ElastiCache replication group `<cluster>`,
    the Memorystore cluster and the Azure cache `<cluster>-redis`."""
    return cluster if cloud == "aws" else f"{cluster}-redis"


def elasticache_user(cluster: str, service: str) -> str:
    """An ElastiCache user id (= its user name, as IAM authentication requires): unique in the account and region."""
    name = f"{cluster}-{service}".lower()
    return fit("-".join(p for p in "".join(c if c.isalnum() else "-" for c in name).split("-") if p), ELASTICACHE_USER_MAX)


def redis_server_ca_ref(cluster: str) -> str:
    """The Secret Manager entry of a GCP region's Memorystore server CA (written by Terraform, public)."""
    return f"gcp-sm:{cluster}-redis-server-ca"


def data_access(s, services, shards, hosts, internal_domain: str, cloud: str, data_bucket: str, region: str = "",
                cluster: str = "", cloud_region: str = "") -> tuple[ServiceDataAccess, ...]:
    """Per service that uses a datastore: its role, its ACL user, its settings and secret references."""
    ds = s.datastores
    tls = "verify-full"  # PgBouncer's certificate, from the region's CA, names pgbouncer.<internal domain>
    ca_ref = region_ca_ref(s, region or internal_domain.split(".")[0])
    cluster = cluster or region  # the name the region's managed caches and search domain are made from
    # Cluster clients need one reachable seed and discover the rest (CLUSTER SLOTS/SHARDS): two primaries, in two
    # zones (the first primaries sit in the first zones), or the managed endpoint's alias
    redis_nodes = ([h.fqdn for h in hosts if h.group == "redis_cluster" and not h.replica_of][:REDIS_SEEDS]
                   or [f"redis.{internal_domain}"])
    # Elasticsearch: two nodes in two zones as the clients' hosts (any node coordinates; sniffing finds the rest)
    es_nodes = [h.fqdn for h in hosts if h.group == "elasticsearch"][:REDIS_SEEDS]
    es_urls = ([f"https://{n}:{ELASTICSEARCH_HTTP_PORT}" for n in es_nodes]
               or [f"https://{managed_search_endpoint(internal_domain)}"])
    out = []
    for svc in services:
        if not set(svc.uses) & {"postgres", "redis", "elasticsearch", "object-storage"}:
            continue
        settings: dict[str, str] = {}
        secrets: list[tuple[str, str]] = []
        role = user = None
        ca = ""
        if "postgres" in svc.uses:
            role = DbRole(svc.name, role_name(svc.name), role_name(svc.name), tuple(sh.database for sh in shards),
                          SHARD_MAP_TABLE, service_ref(ds.pgbouncer.auth_password, svc.name))
            settings.update({PG_ENV["host"]: f"pgbouncer.{internal_domain}", PG_ENV["port"]: str(ds.pgbouncer.port),
                             PG_ENV["user"]: role.name, PG_ENV["sslmode"]: tls,
                             PG_ENV["sslrootcert"]: f"{INTERNAL_CA_DIR}/{INTERNAL_CA_KEY}",
                             PG_ENV["connect_timeout"]: str(PG_CONNECT_TIMEOUT_SECONDS),
                             PG_ENV["databases"]: ",".join(role.databases), PG_ENV["shard_map"]: role.shard_map})
            secrets.append((PG_ENV["password"], role.password_ref))
            ca = ca_ref
        redis_ca = ""
        if "redis" in svc.uses:
            self_managed = ds.redis.deployment == "self-managed"
            if self_managed:
                user = RedisUser(svc.name, svc.name, f"~{svc.name}:*", f"&{svc.name}:*",
                                 redis_commands(ds.redis.version), service_ref(ds.redis.password, svc.name))
            else:  # the service's cloud identity, no password (the module docstring)
                cache = managed_redis_name(cloud, cluster)
                user = RedisUser(svc.name, elasticache_user(cluster, svc.name) if cloud == "aws" else svc.name,
                                 f"~{svc.name}:*", "" if cloud == "azure" else f"&{svc.name}:*",
                                 redis_commands(AZURE_REDIS_ENGINE if cloud == "azure" else ds.redis.version), "",
                                 REDIS_AUTH[cloud], svc.name, cache)
                settings.update({REDIS_ENV["auth"]: user.auth, REDIS_ENV["cache"]: cache})
                if cloud == "gcp":
                    redis_ca = redis_server_ca_ref(cluster)
                    settings[REDIS_ENV["ca_file"]] = f"{REDIS_CA_DIR}/{INTERNAL_CA_KEY}"
            settings.update({REDIS_ENV["nodes"]: ",".join(f"{n}:{ds.redis.port}" for n in redis_nodes),
                             REDIS_ENV["user"]: user.name, REDIS_ENV["prefix"]: f"{svc.name}:",
                             REDIS_ENV["tls"]: "false" if self_managed else "true"})
            if user.password_ref:
                secrets.append((REDIS_ENV["password"], user.password_ref))
        es_user = search_grant = None
        if "elasticsearch" in svc.uses:
            settings[ES_ENV["urls"]] = ",".join(es_urls)
            if ds.elasticsearch.deployment == "self-managed":  # managed search: see the module docstring
                es_user = elasticsearch_user(svc.name, ds.pgbouncer.auth_password)
                settings.update({ES_ENV["user"]: es_user.name, ES_ENV["prefix"]: es_user.index_prefix,
                                 ES_ENV["ca"]: f"{INTERNAL_CA_DIR}/{INTERNAL_CA_KEY}"})
                secrets.append((ES_ENV["password"], es_user.password_ref))
                ca = ca_ref  # the nodes' certificates come from the region's internal CA
            else:  # Amazon OpenSearch Service: the service's IAM role signs (SigV4), no password (module docstring)
                search_grant = SearchGrant(svc.name, svc.name, managed_search_domain(cluster),
                                           svc.name + ES_INDEX_SEPARATOR, ES_AUTH[cloud])
                settings.update({ES_ENV["auth"]: search_grant.auth, ES_ENV["prefix"]: search_grant.index_prefix,
                                 ES_ENV["domain"]: search_grant.domain})
                if cloud_region:
                    settings[ES_ENV["region"]] = cloud_region
        if "object-storage" in svc.uses:
            settings.update({BUCKET_ENV["bucket"]: data_bucket, BUCKET_ENV["cloud"]: cloud})
        out.append(ServiceDataAccess(svc.name, svc.namespace, svc.name + DATASTORE_SETTINGS_SUFFIX, role, user,
                                     _frozen(dict(sorted(settings.items()))), tuple(secrets),
                                     ca, svc.name + INTERNAL_CA_SUFFIX if ca else "",
                                     redis_ca, svc.name + REDIS_CA_SUFFIX if redis_ca else "", es_user=es_user,
                                     search_grant=search_grant))
    return tuple(out)


def _frozen(d: dict) -> Mapping:
    from types import MappingProxyType
    return MappingProxyType(d)


def db_roles(access) -> tuple[DbRole, ...]:
    return tuple(a.db_role for a in access if a.db_role)


def redis_users(access) -> tuple[RedisUser, ...]:
    return tuple(a.redis_user for a in access if a.redis_user)


# ---------------------------------------------------------------- Elasticsearch (self-managed): a user per service

ES_ENV.update({"user": "ELASTICSEARCH_USERNAME", "prefix": "ELASTICSEARCH_INDEX_PREFIX",
               "ca": "ELASTICSEARCH_CA_CERT", "password": "ELASTICSEARCH_PASSWORD"})
ES_INDEX_SEPARATOR = "_"  # <service>_*: no service name holds it (compiler/model/base.py Name), so no prefix nests
ES_SERVICE_CLUSTER_PRIVILEGES = ("monitor",)  # ping / product check, sniffing, health (the module docstring)
ES_SERVICE_INDEX_PRIVILEGES = ("create_index", "write", "read", "view_index_metadata", "delete_index")
ES_ROLE_PREFIX = "platformc_svc_"  # beside the shippers' platformc_fluent_bit / platformc_jaeger


@dataclass(frozen=True)
class ElasticsearchUser:
    """A service's Elasticsearch user and its role."""

    service: str
    name: str  # the user name: the service's
    role: str  # platformc_svc_<service>
    index_prefix: str  # <service>_
    index_patterns: tuple[str, ...]  # (<service>_*,)
    cluster: tuple[str, ...]
    privileges: tuple[str, ...]  # on index_patterns
    password_ref: str

    @property
    def definition(self) -> dict:
        """The role's body for PUT /_security/role/<role> (without the digest metadata the ansible target adds)."""
        return {"cluster": list(self.cluster),
                "indices": [{"names": list(self.index_patterns), "privileges": list(self.privileges)}]}


def elasticsearch_ref(ref: str) -> str:
    """The entry the services' Elasticsearch passwords are kept in, beside the datastore reference `ref` (the same
    store, as internal_ca_ref): vault:<mount>/data/<dir>/elasticsearch#password, aws-sm:<dir>/elasticsearch,
    gcp-sm:elasticsearch, azure-kv:<vault>/elasticsearch, env:ELASTICSEARCH_PASSWORD; `service_ref` of it is a
    service's own."""
    scheme, _, rest = ref.partition(":")
    entry = rest.partition("#")[0]
    if scheme == "env":
        return "env:ELASTICSEARCH_PASSWORD"
    if scheme in ("vault", "aws-sm"):
        parent = entry.rpartition("/")[0]
        return f"{scheme}:{parent + '/' if parent else ''}elasticsearch" + ("#password" if scheme == "vault" else "")
    if scheme == "azure-kv":
        return f"azure-kv:{entry.partition('/')[0]}/elasticsearch"
    return f"{scheme}:elasticsearch"


def elasticsearch_user(service: str, ref: str) -> ElasticsearchUser:
    """A service's user, its password derived from the datastore reference `ref` (elasticsearch_ref)."""
    prefix = service + ES_INDEX_SEPARATOR
    return ElasticsearchUser(service, service, ES_ROLE_PREFIX + service.replace("-", "_"), prefix, (prefix + "*",),
                             ES_SERVICE_CLUSTER_PRIVILEGES, ES_SERVICE_INDEX_PRIVILEGES,
                             service_ref(elasticsearch_ref(ref), service))


def elasticsearch_users(access) -> tuple[ElasticsearchUser, ...]:
    return tuple(a.es_user for a in access if a.es_user)


# ---------------------------------------------------------------- managed search (Amazon OpenSearch Service): IAM per service

ES_AUTH = {"self-managed": "password", "aws": "aws-sigv4"}  # ELASTICSEARCH_AUTH_MODE
ES_ENV.update({"auth": "ELASTICSEARCH_AUTH_MODE", "domain": "ELASTICSEARCH_DOMAIN_NAME",
               "region": "ELASTICSEARCH_AWS_REGION"})  # the signing region (SigV4, service `es`)
SEARCH_ENDPOINT_LABEL = "elasticsearch"  # the domain's custom endpoint: elasticsearch.<internal domain>
OPENSEARCH_DOMAIN_MAX = 28  # OpenSearch domain names: 3-28 characters
# What a service's IAM role may send on its own indices (<service>_*): GET (search, get, mappings), HEAD (index and
# document exists), POST (search with a body, _bulk, _doc, _update, _refresh, _delete_by_query, _update_by_query),
# PUT (create an index, index a document by id, dynamic mapping), DELETE (documents, its own indices). No ESHttpPatch:
# the OpenSearch REST API has no PATCH route for data.
OPENSEARCH_INDEX_ACTIONS = ("es:ESHttpDelete", "es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut")
# ... and on the domain root, read only: ping (HEAD /), info and the product check (GET /), cluster health
# (GET /_cluster/health). No sniffing (GET /_nodes/http): a managed domain's nodes are not reachable by address.
OPENSEARCH_HEALTH_ACTIONS = ("es:ESHttpGet", "es:ESHttpHead")
OPENSEARCH_HEALTH_PATHS = ("", "_cluster/health")  # under arn:...:domain/<name>/: "" is the root path `/`
# Paths the domain access policy denies to every service role although they match its prefix: a comma names several
# indices in one path (`<svc>_a,<other>_b/_search` would match `<svc>_*`), and the index-management calls that name a
# second index or alias (`<svc>_x/_alias/<other>_y`, _clone/_split/_shrink/_rollover to `<other>_y`) would let a
# service create a name in another service's prefix that the other service then writes to (the self-managed role
# withholds `manage` for the same reason). rest.action.multi.allow_explicit_index=false closes _bulk/_mget/_msearch
# bodies naming another index.
OPENSEARCH_DENIED_PATHS = ("*,*", "*/_alias*", "*/_clone*", "*/_split*", "*/_shrink*", "*/_rollover*")


@dataclass(frozen=True)
class SearchGrant:
    """A service's access to the region's managed OpenSearch domain, as its own IAM role (SigV4)."""

    service: str
    identity: str  # the owner of the cloud identity that signs (compiler/ir/identity.py)
    domain: str  # the OpenSearch domain's name
    index_prefix: str  # <service>_
    auth: str  # ES_AUTH: aws-sigv4


def search_paths(index_prefix: str) -> tuple[tuple[tuple[str, ...], str], ...]:
    """(actions, path under arn:...:domain/<domain>/) a service's role may reach: its indices, then the health paths."""
    return ((OPENSEARCH_INDEX_ACTIONS, index_prefix + "*"),
            *((OPENSEARCH_HEALTH_ACTIONS, p) for p in OPENSEARCH_HEALTH_PATHS))


def managed_search_domain(cluster: str) -> str:
    """The region's OpenSearch domain name (the Terraform managed_search module's domain_name)."""
    return cluster[:OPENSEARCH_DOMAIN_MAX].rstrip("-")


def managed_search_endpoint(internal_domain: str) -> str:
    """The name the services dial for the managed domain: a CNAME to the domain's own endpoint in the private zone and
    the domain's custom endpoint, whose ACM certificate (validated in the public zone, which holds the internal
    domain) names it, so clients verifying the hostname accept it."""
    return f"{SEARCH_ENDPOINT_LABEL}.{internal_domain}"


# Advanced options of the managed domain: bodies of _bulk/_mget/_msearch may not name an index (the URL's index is the
# one IAM authorized; AWS: "at its default setting of true, it allows users to bypass subresource permissions").
OPENSEARCH_ADVANCED_OPTIONS = {"rest.action.multi.allow_explicit_index": "false"}


def search_grants(access) -> tuple[SearchGrant, ...]:
    return tuple(a.search_grant for a in access if a.search_grant)
