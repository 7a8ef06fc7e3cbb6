"""Verify checker for the hosts' own gates: nftables on every data host, pg_hba.conf on PostgreSQL, and the
TLS versions both ends of PgBouncer -> PostgreSQL and of replication agree on.

Read from the generated tree only:

    ansible/inventories/<region>/hosts.yml            which hosts are in which groups (and the group tree)
    ansible/inventories/<region>/group_vars/*.yml     the variables each group's hosts get
    ansible/roles/common/defaults/main.yml            the role's defaults (lowest precedence)
    ansible/roles/common/templates/nftables.conf.j2   the firewall the common role renders from them
    datastores/<region>/pg_hba.conf, pgbouncer.ini, postgresql.conf
    datastores/<region>/dr-<source>/pg_hba.conf      the pg_hba.conf of a standby cluster the region runs

nftables: for each host group a connection enters, the variables are merged as Ansible does (role defaults,
all, then parent groups before child groups, alphabetically within a depth, then host variables), the template
is rendered with them, and the rendered `chain input` is evaluated rule by rule: every source CIDR of the
connection must reach an `accept` for its port before any `drop`/`reject`, or fall to an accepting policy. A
connection through a PostgreSQL endpoint whose load balancer delivers to another port than the one served (Azure's,
the region root's postgres_endpoints backend_port: compiler/ir/postgres_ha.py) arrives on that port: the rendered
nat `prerouting` chain must redirect it to the port served (NAT at prerouting comes before the input filter, which
then sees the port served), and no input rule may open it for something else (the redirect would take its
connections).

patroni-fence: the split-brain fence's connection (compiler/ir/postgres_ha.py FENCE_LAYER) is what every member of the
region's own cluster dials before its Patroni starts: the patroni role's drop-in of patroni@<version>-main, rendered
with the member's variables as the copy task writes it, runs (ExecStartPre) a script the role installs from its files,
over exactly the connection's hosts on its port, and verifies their certificates with a CA file the role writes.

pg_hba: the lines are evaluated in order, as PostgreSQL does (first line whose type, database, user and
address match decides): from each source CIDR, the connection's database and user must first match a
`hostssl` line with scram-sha-256. A line addressed by host name needs reverse DNS, which nothing creates:
it never counts as matching a CIDR. A connection to a standby cluster the region runs (the `pg_hba-standby` layer:
its PgBouncer, after a promotion) is held to that cluster's own file the same way.

TLS: every TLS connection the region's PostgreSQL serves (each one its pg_hba.conf gates) is named on its own: the
server's ssl_min/max_protocol_version against PgBouncer's server_tls_* (PgBouncer's pools), primary_conninfo (the
region's own replicas), or, for a client configured outside these files (the DR partner's standby, Patroni's
rejoin), against the connection's floor alone.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from compiler.ir.postgres_ha import FENCE_LAYER, STANDBY_HBA_LAYER, standby_hba_file, standby_of
from compiler.verify import Broken, Result, strip_lines

LAYERS = ("nftables", "pg_hba", STANDBY_HBA_LAYER, FENCE_LAYER)
TLS_LAYER = "tls"  # object-level: the versions both ends of a PostgreSQL hop accept

INVENTORY = "ansible/inventories/{region}"
COMMON_DEFAULTS = "ansible/roles/common/defaults/main.yml"
NFT_TEMPLATE = "ansible/roles/common/templates/nftables.conf.j2"
RULES_VAR = "common_firewall_rules"  # the variable the template renders (for naming the line to blame)
REDIRECTS_VAR = "common_port_redirects"  # [{protocol, ports, to_port}]: the nat prerouting redirects it renders
DATASTORES = "datastores/{region}"
PATRONI_ROLE = "ansible/roles/patroni"
_FENCE_DROPIN = re.compile(r"^/etc/systemd/system/patroni@(?P<instance>[^/]+)\.service\.d/[^/]+\.conf$")

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def check(tree, region, connections):
    out: list[Result] = []
    nft = [c for c in connections if "nftables" in c.layers]
    if nft:
        out += _check_nftables(tree, region, nft)
    hba = [c for c in connections if "pg_hba" in c.layers]
    if hba:
        out += _check_pg_hba(tree, region, hba)
    # a standby cluster the region runs has its own pg_hba.conf (the source's lines and the region's PgBouncer)
    for c in connections:
        if STANDBY_HBA_LAYER in c.layers:
            of_region = standby_of(c.dest.name) or ""
            out += _check_pg_hba(tree, region, [c], f"{DATASTORES.format(region=region)}/{standby_hba_file(of_region)}",
                                 STANDBY_HBA_LAYER)
    out += _check_tls(tree, region, connections)
    for c in connections:
        if FENCE_LAYER in c.layers:
            out.append(Result(FENCE_LAYER, c.id, _check_fence(tree, region, c)))
    return out


# ================================================================ networks

@lru_cache(maxsize=4096)
def _net(text: str) -> Net | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _subtract(remaining: list[Net], net: Net) -> list[Net]:
    out = []
    for r in remaining:
        if r.version != net.version or not r.overlaps(net):
            out.append(r)
        elif not r.subnet_of(net):
            out.extend(r.address_exclude(net) if net.subnet_of(r) else [r])
    return out


# ================================================================ nftables

class _Inventory:
    """hosts.yml's group tree, and each host's variables as Ansible merges them."""

    def __init__(self, tree, region: str, read: set[str] | None = None):
        self.tree = tree
        self.read = read  # the variables that matter (None: all)
        self.base = INVENTORY.format(region=region)
        self.hosts_file = f"{self.base}/hosts.yml"
        docs = tree.yaml_docs(self.hosts_file)
        self.parents: dict[str, set[str]] = {}
        self.members: dict[str, dict[str, dict]] = {}  # group -> host -> host vars (direct members)
        self.depth: dict[str, int] = {"all": 0}
        if docs:
            self._walk("all", docs[0].get("all") or {}, 0)

    def _walk(self, name: str, node: dict, depth: int):
        self.depth[name] = max(self.depth.get(name, 0), depth)
        self.members.setdefault(name, {})
        for host, hvars in ((node or {}).get("hosts") or {}).items():
            if host != "__line__":
                self.members[name][host] = hvars or {}
        for child, sub in ((node or {}).get("children") or {}).items():
            if child == "__line__":
                continue
            self.parents.setdefault(child, set()).add(name)
            self._walk(child, sub or {}, depth + 1)

    def hosts_in(self, group: str) -> set[str]:
        out = set(self.members.get(group, {}))
        for child, parents in self.parents.items():
            if group in parents:
                out |= self.hosts_in(child)
        return out

    def groups_of(self, host: str) -> list[str]:
        direct = {g for g, m in self.members.items() if host in m}
        seen, todo = set(), list(direct)
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(self.parents.get(g, ()))
        seen.add("all")
        return sorted(seen, key=lambda g: (self.depth.get(g, 0), g))

    def host_vars(self, host: str) -> dict:
        for m in self.members.values():
            if host in m:
                return m[host]
        return {}

    def variables(self, host: str) -> tuple[dict, dict]:
        """(variables, variable -> the file that set it last) for one host."""
        values, origin = {}, {}
        layers = [(COMMON_DEFAULTS, self._file_vars(COMMON_DEFAULTS))]
        layers += [(f"{self.base}/group_vars/{g}.yml", self._file_vars(f"{self.base}/group_vars/{g}.yml"))
                   for g in self.groups_of(host)]
        layers.append((self.hosts_file, self.host_vars(host)))
        for rel, data in layers:
            for k, v in data.items():
                if k != "__line__":
                    values[k], origin[k] = v, rel
        return values, origin

    def _file_vars(self, rel: str) -> dict:
        text = self.tree.text(rel)
        if text is None:
            return {}
        if self.read is not None and not any(name in text for name in self.read):
            return {}  # a file that never names a variable the template reads cannot set one: not parsed
        docs = self.tree.yaml_docs(rel)
        return docs[0] if docs and isinstance(docs[0], dict) else {}


_RULE = re.compile(r"^\s*(?:(?P<family>ip6?)\s+saddr\s+(?P<saddr>\{[^}]*\}|\S+)\s+)?"
                   r"(?:(?P<proto>tcp|udp)\s+dport\s+(?P<dport>\{[^}]*\}|\S+)\s+)?"
                   r"(?P<verdict>accept|drop|reject)\s*(?:comment\s+.*)?$")
_POLICY = re.compile(r"type\s+filter\s+hook\s+input\b.*\bpolicy\s+(accept|drop)\s*;")
_PREROUTING = re.compile(r"type\s+nat\s+hook\s+prerouting\b")
_REDIRECT = re.compile(r"^(?P<proto>tcp|udp)\s+dport\s+(?P<dport>\{[^}]*\}|\d+)\s+redirect\s+to\s+:(?P<to>\d+)\s*;?$")


def _elements(text: str) -> list[str]:
    return [e.strip() for e in text.strip("{} ").split(",") if e.strip()]


def _ports(text: str) -> set[int] | None:
    out = set()
    for e in _elements(text):
        if "-" in e:
            a, _, b = e.partition("-")
            if a.isdigit() and b.isdigit():
                out |= set(range(int(a), int(b) + 1))
        elif e.isdigit():
            out.add(int(e))
    return out


class _Ruleset:
    """The input chain of a rendered nftables file: its policy and its rules, in order; and the redirects of its nat
    prerouting chain: (protocol, port) -> the port it becomes (the first rule matching a port decides)."""

    def __init__(self, text: str):
        self.policy = "accept"  # nftables' default policy
        self._memo: dict = {}
        self.rules: list[tuple[str, list[Net] | None, str | None, set[int] | None, str]] = []
        self.redirects: dict[tuple[str, int], int] = {}
        in_input = in_nat = False
        for line in text.splitlines():
            s = line.split("#", 1)[0].strip()
            if re.match(r"chain\s+\S+\s*\{", s):
                in_input = in_nat = False
            if not s:
                continue
            if _PREROUTING.search(s):
                in_nat = True
                continue
            if in_nat:
                r = _REDIRECT.match(s)
                for port in sorted(_ports(r.group("dport")) or ()) if r else ():
                    self.redirects.setdefault((r.group("proto"), port), int(r.group("to")))
                continue
            m = _POLICY.search(s)
            if m:
                in_input, self.policy = True, m.group(1)
                continue
            if not in_input:
                continue
            r = _RULE.match(s)
            if not r:
                continue  # iif lo, ct state, icmp: none of them concerns a new TCP connection from a network
            nets = None
            if r.group("saddr"):
                nets = [n for n in map(_net, _elements(r.group("saddr"))) if n is not None]
            ports = _ports(r.group("dport")) if r.group("dport") else None
            self.rules.append((r.group("family") or "", nets, r.group("proto"), ports, r.group("verdict")))

    def opens(self, proto: str, port: int) -> bool:
        """Whether an input rule accepts something on the port (a service listens there)."""
        return any(v == "accept" and ports is not None and port in ports and (not p or p == proto)
                   for _f, _n, p, ports, v in self.rules)

    def admits(self, source: Net, proto: str, port: int) -> bool:
        key = (source, proto, port)
        if key not in self._memo:
            self._memo[key] = self._admits(source, proto, port)
        return self._memo[key]

    def _admits(self, source: Net, proto: str, port: int) -> bool:
        remaining = [source]
        for family, nets, rproto, ports, verdict in self.rules:
            if rproto and rproto != proto:
                continue
            if ports is not None and port not in ports:
                continue
            fam_ok = (family == "ip" and source.version == 4) or (family == "ip6" and source.version == 6)
            if family and not fam_ok:
                continue
            hit = remaining if nets is None else [n for n in nets if any(r.overlaps(n) for r in remaining
                                                                          if r.version == n.version)]
            if not hit:
                continue
            if verdict != "accept":
                return False
            for n in (hit if nets is not None else list(remaining)):
                remaining = _subtract(remaining, n)
            if not remaining:
                return True
        return self.policy == "accept"


def _nft_env():
    import jinja2

    env = jinja2.Environment(keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False,
                             undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda s, *a, **k: "\n".join("# " + line for line in str(s).splitlines())
    env.tests["search"] = lambda value, pattern: re.search(pattern, str(value)) is not None
    env.tests["match"] = lambda value, pattern: re.match(pattern, str(value)) is not None
    return env


def _template_variables(tree) -> set[str] | None:
    """The variables the firewall template reads (None when it cannot be parsed: then every one counts)."""
    cache = tree.__dict__.setdefault("_hosts_nft_template", {})
    if "vars" not in cache:
        import jinja2
        from jinja2 import meta
        try:
            cache["vars"] = meta.find_undeclared_variables(_nft_env().parse(tree.text(NFT_TEMPLATE) or ""))
        except jinja2.TemplateError:
            cache["vars"] = None
    return cache["vars"]


def _render_nft(tree, variables: dict):
    """The firewall the common role renders for these variables, or the error that stops it."""
    source = tree.text(NFT_TEMPLATE)
    if source is None:
        return None, f"{NFT_TEMPLATE} is missing"
    cache = tree.__dict__.setdefault("_hosts_nft_template", {})
    if "t" not in cache:
        cache["t"] = _nft_env().from_string(source)
    try:
        return cache["t"].render(ansible_managed="Ansible managed", **variables), None
    except Exception as exc:  # a template Ansible could not render either
        return None, f"the template does not render: {exc}"


def _rules_admit(rules, source: Net, proto: str, port: int) -> bool:
    """Whether the variable's rules (as data) admit the source: the blame falls on the template otherwise."""
    if not isinstance(rules, list):
        return False
    remaining = [source]
    for rule in rules:
        if not isinstance(rule, dict) or port not in (rule.get("ports") or ()):
            continue
        if (rule.get("protocol") or "tcp") != proto:
            continue
        for s in rule.get("sources") or ():
            n = _net(str(s))
            if n is not None:
                remaining = _subtract(remaining, n)
    return not remaining


def _check_nftables(tree, region, conns) -> list[Result]:
    from compiler.verify.infra import _Region, arrival_ports
    inv = _Inventory(tree, region, _template_variables(tree))
    # the PostgreSQL endpoints whose load balancer delivers to another port than the one served (Azure's)
    arrives = arrival_ports(_Region(tree, region)) if any(c.address.startswith("postgres") for c in conns) else {}
    out = []
    per_host: dict[str, tuple] = {}  # host -> (ruleset | None, error, variables, origin)

    def host_state(host):
        if host not in per_host:
            variables, origin = inv.variables(host)
            text, error = _render_nft(tree, variables)
            per_host[host] = (_Ruleset(text) if text is not None else None, error, variables, origin)
        return per_host[host]

    # a host's groups and its own variables the template reads decide what it renders: once per such key
    rendered: dict[tuple, tuple] = {}
    read = _template_variables(tree)
    for c in conns:
        res = Result("nftables", c.id)
        out.append(res)
        group = c.dest.host_group
        hosts = sorted(inv.hosts_in(group)) if group else []
        if not hosts:
            res.broken.append(Broken(inv.hosts_file, 0 if not tree.exists(inv.hosts_file) else 1, "nftables", c.id,
                                     f"no host in group {group!r}: nothing runs the firewall this connection needs"))
            continue
        proto = c.protocol.lower()
        for host in hosts:
            own = {k: v for k, v in inv.host_vars(host).items() if read is None or k in read}
            key = tuple(inv.groups_of(host)) + (repr(sorted(own.items())),)
            if key not in rendered:
                rendered[key] = host_state(host)
            ruleset, error, variables, origin = rendered[key]
            if ruleset is None:
                res.broken.append(Broken(NFT_TEMPLATE, 1, "nftables", c.id, f"host {host}: {error}"))
                break
            missing = [s for s in c.source.cidrs if (n := _net(s)) is not None and not ruleset.admits(n, proto,
                                                                                                     c.dest_port)]
            moved = _redirect_broken(tree, inv, host, ruleset, variables, origin, c, arrives.get(c.address), proto)
            if not missing and not moved:
                continue
            res.broken.append(moved or _blame_nft(tree, inv, host, variables, origin, c, missing, proto))
            break  # one broken link per connection: the other hosts of the group share the cause
    return out


def _redirect_broken(tree, inv, host, ruleset, variables, origin, c, arrive, proto) -> Broken | None:
    """The connection arrives on `arrive` (its endpoint's backend port, when that is not the port served): the host
    must redirect it to c.dest_port, and serve nothing else there."""
    if arrive is None or arrive == c.dest_port:
        return None
    to = ruleset.redirects.get((proto, arrive))
    what = f"{host}'s firewall gets {c.address}'s connections on {arrive}/{proto} (its load balancer's backend port)"
    if to == c.dest_port:
        if not ruleset.opens(proto, arrive):
            return None
        rel = origin.get(RULES_VAR, inv.base + "/group_vars/all.yml")
        return Broken(rel, tree.line_of(rel, f"- {arrive}") if tree.exists(rel) else 0, "nftables", c.id,
                      f"{what} and also opens {arrive} for another service: the redirect to {c.dest_port} takes its "
                      "connections")
    data = variables.get(REDIRECTS_VAR)
    said = any(isinstance(r, dict) and arrive in (r.get("ports") or ()) and r.get("to_port") == c.dest_port
               and (r.get("protocol") or "tcp") == proto for r in (data if isinstance(data, list) else []))
    if said:
        return Broken(NFT_TEMPLATE, tree.line_of(NFT_TEMPLATE, "redirect to :") or 1, "nftables", c.id,
                      f"{what}: the variables redirect it to {c.dest_port}, the template does not")
    rel = origin.get(REDIRECTS_VAR)
    if rel in (None, COMMON_DEFAULTS):  # the role's empty default: the redirects belong beside the host's rules
        rel = origin.get(RULES_VAR, inv.base + "/group_vars/all.yml")
    line = (tree.line_of(rel, f"{REDIRECTS_VAR}:") or tree.line_of(rel, f"{RULES_VAR}:")) if tree.exists(rel) else 0
    return Broken(rel, line, "nftables", c.id,
                  f"{what} and redirects them {'to ' + str(to) if to else 'nowhere'}, not to {c.dest_port} "
                  f"({REDIRECTS_VAR})")


def _blame_nft(tree, inv, host, variables, origin, c, missing, proto) -> Broken:
    port = c.dest_port
    what = f"{host}'s firewall does not admit {', '.join(missing)} -> {port}/{proto}"
    rules = variables.get(RULES_VAR)
    data_ok = all(_rules_admit(rules, _net(s), proto, port) for s in missing)
    if data_ok:
        line = tree.line_of(NFT_TEMPLATE, "dport") or 1
        return Broken(NFT_TEMPLATE, line, "nftables", c.id, what + " (the variables do: the template drops it)")
    rel = origin.get(RULES_VAR, inv.base + "/group_vars/all.yml")
    same_port = [r for r in (rules if isinstance(rules, list) else []) if isinstance(r, dict)
                 and port in (r.get("ports") or ())]
    if same_port:
        r = same_port[0]
        return Broken(rel, r.get("__line__", 0), "nftables", c.id,
                      f"{what}: the rule for {port} admits only {', '.join(map(str, r.get('sources') or [])) or 'nothing'}")
    line = tree.line_of(rel, f"{RULES_VAR}:") if tree.exists(rel) else 0
    return Broken(rel, line, "nftables", c.id, f"{what}: no rule of {RULES_VAR} opens port {port}")


# ================================================================ pg_hba



def _hba_fields(line: str) -> list[list[tuple[str, bool]]]:
    """The fields of a pg_hba.conf line; each field a list of (item, quoted). `#` outside quotes ends the line."""
    fields: list[list[tuple[str, bool]]] = []
    i, n, cur, joined = 0, len(line), None, False
    while i < n:
        ch = line[i]
        if ch == "#":
            break
        if ch.isspace():
            if cur is not None and not joined:
                fields.append(cur)
                cur = None
            i += 1
            continue
        if ch == ",":
            joined = True
            i += 1
            continue
        if ch == '"':
            j = line.find('"', i + 1)
            j = n if j < 0 else j
            item, quoted, i = line[i + 1:j], True, j + 1
        else:
            m = re.match(r'[^\s,"#]+', line[i:])
            item, quoted, i = m.group(0), False, i + m.end()
        if cur is None:
            cur = [(item, quoted)]
        elif joined:
            cur.append((item, quoted))
        else:
            fields.append(cur)
            cur = [(item, quoted)]
        joined = False
    if cur is not None:
        fields.append(cur)
    return fields


class _HbaLine:
    def __init__(self, number: int, fields):
        self.number = number
        self.type = fields[0][0][0]
        self.databases = fields[1] if len(fields) > 1 else []
        self.users = fields[2] if len(fields) > 2 else []
        self.address = None  # a network, or the text of a host name / keyword
        self.address_text = ""
        rest = fields[3:]
        if self.type != "local" and rest:
            text = rest[0][0][0]
            self.address_text = text
            if "/" in text:
                self.address = _net(text)
                rest = rest[1:]
            elif len(rest) > 1 and re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", text) and _net(f"{text}/{rest[1][0][0]}"):
                self.address = _net(f"{text}/{rest[1][0][0]}")  # address and mask in two fields
                self.address_text = f"{text} {rest[1][0][0]}"
                rest = rest[2:]
            else:
                rest = rest[1:]
        self.method = rest[0][0][0] if rest else ""
        self.options = [f[0][0] for f in rest[1:]]  # name=value after the method (clientcert=verify-ca ...)

    def matches_database(self, database: str) -> bool:
        """database: the connection's ("all" = any database, "replication", or one name)."""
        for item, quoted in self.databases:
            if not quoted and item == "replication":
                if database == "replication":
                    return True
            elif database == "replication":
                continue  # only the replication keyword matches a replication connection
            elif not quoted and item == "all":
                return True
            elif database != "all" and item == database:
                return True
        return False

    def matches_user(self, user: str) -> bool:
        for item, quoted in self.users:
            if not quoted and item == "all":
                return True
            if user != "all" and item == user and (quoted or not item.startswith(("+", "@"))):
                return True
        return False


def _hba(tree, rel) -> list[_HbaLine]:
    cache = tree.__dict__.setdefault("_hosts_hba", {})
    if rel not in cache:
        lines = []
        for i, raw in enumerate((tree.text(rel) or "").splitlines(), 1):
            fields = _hba_fields(raw)
            if fields and fields[0][0][0] in ("local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"):
                lines.append(_HbaLine(i, fields))
        cache[rel] = lines
    return cache[rel]


def _hba_verdict(lines, source: Net, database: str, user: str, tls: bool) -> tuple[bool, _HbaLine | None, str]:
    """(admitted, the deciding or blamed line, why) for connections from every address of `source`."""
    remaining = [source]
    for line in lines:
        if line.type == "local":
            continue
        if line.type in ("hostssl",) and not tls or line.type == "hostnossl" and tls or line.type == "hostgssenc":
            continue
        if not (line.matches_database(database) and line.matches_user(user)):
            continue
        net = line.address
        if net is None:
            if line.address_text == "all":
                net = ipaddress.ip_network("0.0.0.0/0") if source.version == 4 else ipaddress.ip_network("::/0")
            else:
                continue  # a host name (reverse DNS) or samehost/samenet: never the path a CIDR takes
        if not any(r.version == net.version and r.overlaps(net) for r in remaining):
            continue
        if line.method != "scram-sha-256":
            return False, line, (f"line {line.number} matches first and says {line.method or 'nothing'}"
                                 + ("" if line.method == "reject" else ", not scram-sha-256"))
        if line.type != "hostssl":
            return False, line, f"line {line.number} matches first as `{line.type}`: TLS is not required"
        remaining = _subtract(remaining, net)
        if not remaining:
            return True, line, ""
    return False, None, "no line matches"


def _check_pg_hba(tree, region, conns, rel: str | None = None, layer: str = "pg_hba") -> list[Result]:
    rel = rel or f"{DATASTORES.format(region=region)}/pg_hba.conf"
    lines = _hba(tree, rel)
    out = []
    for c in conns:
        res = Result(layer, c.id)
        out.append(res)
        if tree.text(rel) is None:
            res.broken.append(Broken(rel, 0, layer, c.id, f"{rel.rsplit('/', 1)[-1]} is missing"))
            continue
        # each database and each role the connection names (PgBouncer logs in as several roles)
        pairs = [(db.strip(), user.strip()) for db in (c.database or "all").split(",")
                 for user in (c.user or "all").split(",")]
        for db, user in pairs:
            bad = None
            for s in c.source.cidrs:
                n = _net(s)
                if n is None:
                    continue
                ok, line, why = _hba_verdict(lines, n, db, user, bool(c.tls))
                if not ok:
                    bad = (s, line, why)
                    break
            if bad:
                s, line, why = bad
                # the file's final catch-all reject (or no line at all) decided: point at the line that was
                # meant to admit the connection, when there is one
                if line is None or (line.method == "reject" and line.address is not None and line.address.prefixlen == 0):
                    cand, cand_why = _hba_candidate(lines, db, user, _net(s))
                    if cand is not None:
                        line, why = cand, cand_why
                res.broken.append(Broken(rel, line.number if line else len((tree.text(rel) or "").splitlines()),
                                         layer, c.id, f"database {db} as {user} from {s} not "
                                         f"admitted: {why}"))
                break
        res.broken += _client_certificate(tree, region, rel, lines, c, layer)
    return out


def _client_certificate(tree, region, rel, lines, c, layer: str = "pg_hba") -> list[Broken]:
    """A line that admits PgBouncer only with a client certificate (clientcert=...) needs pgbouncer.ini to present
    one (server_tls_cert_file and server_tls_key_file): without them every server login fails."""
    if c.source.host_group != "pgbouncer" or not c.source.cidrs:
        return []
    n = _net(c.source.cidrs[0])
    if n is None:
        return []
    ok, line, _ = _hba_verdict(lines, n, (c.database or "all").split(",")[0].strip(),
                               (c.user or "all").split(",")[0].strip(), bool(c.tls))
    if not ok or line is None or not any(o.startswith("clientcert=") for o in line.options):
        return []
    pgb_rel = f"{DATASTORES.format(region=region)}/pgbouncer.ini"
    conf = _conf(tree, pgb_rel)
    missing = [k for k in ("server_tls_cert_file", "server_tls_key_file") if k not in conf]
    if not missing:
        return []
    where = conf.get("server_tls_ca_file", ("", len((tree.text(pgb_rel) or "").splitlines())))[1]
    return [Broken(pgb_rel, where, layer, c.id, f"pg_hba.conf line {line.number} requires a client certificate "
                                               f"({','.join(line.options)}) but PgBouncer sets no {' or '.join(missing)}")]


def _hba_candidate(lines, database, user, source) -> tuple[_HbaLine | None, str]:
    """The line a reader should look at when no line matched: a host-name line for this database and user,
    else a hostssl line for another database or user (one whose address covers the source first)."""
    for line in lines:
        if line.type != "local" and line.address is None and line.address_text not in ("all", "samehost", "samenet") \
                and line.matches_database(database) and line.matches_user(user):
            return line, (f"line {line.number} matches by host name {line.address_text}, which needs reverse DNS "
                          "nothing creates; use the source's CIDR")
    covering = [x for x in lines if x.address is not None and x.address.version == source.version
                and source.subnet_of(x.address)]
    for line in covering + [x for x in lines if x not in covering]:
        if line.type == "hostssl" and line.method == "scram-sha-256" and line.address is not None:
            if not line.matches_database(database):
                return line, f"line {line.number} names another database ({_field(line.databases)})"
            if not line.matches_user(user):
                return line, f"line {line.number} names another user ({_field(line.users)})"
    return None, "no line matches"


def _field(items) -> str:
    return ",".join(f'"{i}"' if q else i for i, q in items)


# ================================================================ TLS at both ends

_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
_PG_VERSION = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_PGB_PROTOCOLS = {"tlsv1.0": {"1.0"}, "tlsv1.1": {"1.1"}, "tlsv1.2": {"1.2"}, "tlsv1.3": {"1.3"},
                  "all": set(_VERSIONS), "secure": {"1.2", "1.3"}, "legacy": set(_VERSIONS), "default": {"1.2", "1.3"}}
_VERIFYING = ("verify-ca", "verify-full")


def _conf(tree, rel: str, sep: str = "=") -> dict[str, tuple[str, int]]:
    """name -> (raw value, line) of a postgresql.conf / pgbouncer.ini; later settings win. [databases] skipped."""
    cache = tree.__dict__.setdefault("_hosts_conf", {})
    if rel not in cache:
        out, section = {}, ""
        for i, line in enumerate((tree.text(rel) or "").splitlines(), 1):
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("["):
                section = s.strip("[]").strip()
                continue
            if section == "databases" or sep not in s:
                continue
            k, _, v = s.partition(sep)
            v = v.strip()
            if v.startswith("'"):
                end = 1
                while end < len(v):
                    if v[end] == "'" and (end + 1 >= len(v) or v[end + 1] != "'"):
                        break
                    end += 2 if v[end] == "'" else 1
                v = v[1:end].replace("''", "'")
            else:
                v = re.split(r"\s+[#;]", v, 1)[0].strip()
            out[k.strip().lower()] = (v, i)
        cache[rel] = out
    return cache[rel]


def _range(lo: str, hi: str) -> set[str]:
    lo_i = _VERSIONS.index(lo) if lo in _VERSIONS else 0
    hi_i = _VERSIONS.index(hi) if hi in _VERSIONS else len(_VERSIONS) - 1
    return set(_VERSIONS[lo_i:hi_i + 1])


def _conninfo(text: str) -> dict[str, str]:
    out, i = {}, 0
    pat = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")
    while i < len(text):
        m = pat.match(text, i)
        if not m:
            break
        v = m.group(2)
        if v.startswith("'"):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[m.group(1)] = v
        i = m.end()
    return out


def _server_versions(pg: dict) -> tuple[set[str], int, int]:
    lo, lo_line = pg.get("ssl_min_protocol_version", ("TLSv1.2", 0))  # PostgreSQL's default floor
    hi, hi_line = pg.get("ssl_max_protocol_version", ("", 0))
    return _range(_PG_VERSION.get(lo, "1.0"), _PG_VERSION.get(hi, "1.3")), lo_line, hi_line


def _floor(versions: set[str]) -> str:
    return min(versions, key=_VERSIONS.index) if versions else ""


def _check_tls(tree, region, conns) -> list[Result]:
    """Every TLS connection this region's PostgreSQL serves (the ones its pg_hba.conf gates) is checked and named:
    a server setting (ssl_min/max_protocol_version) breaks each of them. Against the client config this tree holds
    for it: PgBouncer's server_tls_* for PgBouncer's pools, primary_conninfo for the region's own replicas; a
    client configured elsewhere (the DR partner's standby, Patroni's rejoin) is checked at the server end only.
    A standby cluster the region runs serves with its source's postgresql.conf (its custom_conf): PgBouncer's
    connection to it (after a promotion) is held to that file."""
    base = DATASTORES.format(region=region)
    pgb_rel = f"{base}/pgbouncer.ini"
    out = []
    served = [c for c in conns if ("pg_hba" in c.layers or STANDBY_HBA_LAYER in c.layers)
              and c.app_protocol == "postgresql" and c.tls]
    for c in served:
        res = Result(TLS_LAYER, c.id)
        out.append(res)
        standby = standby_of(c.dest.name) if STANDBY_HBA_LAYER in c.layers else None
        pg_rel = f"{DATASTORES.format(region=standby or region)}/postgresql.conf"
        pg, server, server_line = _tls_server(tree, pg_rel)
        if c.source.host_group == "pgbouncer":
            pgb = _conf(tree, pgb_rel)
            raw, line = pgb.get("server_tls_protocols", ("secure", 0))
            client: set[str] = set()
            for item in re.split(r"[,\s]+", raw.lower()):
                client |= _PGB_PROTOCOLS.get(item, set())
            mode, mode_line = pgb.get("server_tls_sslmode", ("prefer", 0))
            if mode not in _VERIFYING:
                res.broken.append(Broken(pgb_rel, mode_line, TLS_LAYER, c.id, f"server_tls_sslmode = {mode}: PgBouncer "
                                         "does not verify PostgreSQL's certificate (verify-full expected)"))
            res.broken += _agree(c, "PgBouncer (server_tls_protocols)", client, pgb_rel, line,
                                 server, pg_rel, server_line(client))
        elif c.database == "replication" and "inter-region" not in c.layers:
            raw, line = pg.get("primary_conninfo", ("", 0))
            info = _conninfo(raw)
            mode = info.get("sslmode", "prefer")
            if mode not in _VERIFYING:
                res.broken.append(Broken(pg_rel, line, TLS_LAYER, c.id, f"primary_conninfo sslmode={mode}: the standby "
                                         "does not verify the primary's certificate (verify-full expected)"))
            client = _range(_PG_VERSION.get(info.get("ssl_min_protocol_version", "TLSv1.2"), "1.0"),
                            _PG_VERSION.get(info.get("ssl_max_protocol_version", ""), "1.3"))
            res.broken += _agree(c, "the standby (primary_conninfo)", client, pg_rel, line, server, pg_rel,
                                 server_line(client))
        else:  # the client's settings are not in this region's files: taken as its floor and up, the server is blamed
            floor = c.tls if c.tls in _VERSIONS else "1.0"
            client = set(_VERSIONS[_VERSIONS.index(floor):])
            res.broken += _agree(c, f"{c.source.name} (TLS {floor} or later)", client, pg_rel, server_line(client),
                                 server, pg_rel, server_line(client))
    return out


def _tls_server(tree, pg_rel: str):
    """A postgresql.conf as a TLS server: its settings, the versions it accepts, and the line to blame for a client
    (ssl_max_protocol_version's when it sits below every version the client speaks, else the floor's)."""
    pg = _conf(tree, pg_rel)
    server, lo_line, hi_line = _server_versions(pg)
    hi = _PG_VERSION.get(pg.get("ssl_max_protocol_version", ("", 0))[0], "")

    def line_for(client: set[str]) -> int:
        if hi_line and hi and client and _VERSIONS.index(hi) < _VERSIONS.index(_floor(client)):
            return hi_line
        return lo_line or hi_line
    return pg, server, line_for


def _agree(c, client_name, client, client_rel, client_line, server, server_rel, server_line) -> list[Broken]:
    out = []
    both = client & server
    if not both:
        out.append(Broken(client_rel, client_line, TLS_LAYER, c.id,
                          f"{client_name} speaks TLS {', '.join(sorted(client)) or 'nothing'}, PostgreSQL "
                          f"({server_rel}:{server_line}) accepts {', '.join(sorted(server)) or 'nothing'}: no common version"))
        return out
    if c.tls in _VERSIONS:
        if _VERSIONS.index(_floor(client)) < _VERSIONS.index(c.tls):
            out.append(Broken(client_rel, client_line, TLS_LAYER, c.id,
                              f"{client_name} accepts TLS {_floor(client)}, below the floor {c.tls}"))
        if _VERSIONS.index(_floor(server)) < _VERSIONS.index(c.tls):
            out.append(Broken(server_rel, server_line, TLS_LAYER, c.id,
                              f"PostgreSQL accepts TLS {_floor(server)}, below the floor {c.tls}"))
    return out


# ================================================================ the split-brain fence

def _role_tasks(tree) -> list[dict]:
    docs = tree.yaml_docs(f"{PATRONI_ROLE}/tasks/main.yml")
    tasks = docs[0] if docs and isinstance(docs[0], list) else []
    return [t for t in tasks if isinstance(t, dict)]


def _copies(tasks) -> list[dict]:
    return [t for t in tasks if isinstance(t.get("ansible.builtin.copy"), dict)]


def _check_fence(tree, region, c) -> list[Broken]:
    import shlex

    import jinja2
    tasks_rel = f"{PATRONI_ROLE}/tasks/main.yml"
    inv = _Inventory(tree, region)
    by_address = {hv.get("ansible_host"): h for m in inv.members.values() for h, hv in m.items()
                  if isinstance(hv, dict)}
    copies = _copies(_role_tasks(tree))
    dropins = [t for t in copies if str(t["ansible.builtin.copy"].get("dest", "")).startswith("/etc/systemd/system/patroni@")
               and "ExecStartPre=" in str(t["ansible.builtin.copy"].get("content", ""))]
    if not dropins:
        return [Broken(tasks_rel, 1 if tree.exists(tasks_rel) else 0, FENCE_LAYER, c.id,
                       "no drop-in of a Patroni unit runs the fence before Patroni starts")]
    task = dropins[0]
    args = task["ansible.builtin.copy"]
    defaults = (tree.yaml_docs(f"{PATRONI_ROLE}/defaults/main.yml") or [{}])[0]
    render = tree.__dict__.get("_hosts_fence_renderer")
    if render is None:  # one per tree: every region's fence renders the same few texts
        render = tree.__dict__["_hosts_fence_renderer"] = _Renderer(
            jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined))
    want = sorted(f"https://{h}:{c.dest_port}" for h in c.dest.hosts)
    out: list[Broken] = []
    for fqdn in c.source.hosts:
        host = by_address.get(fqdn)
        if host is None:
            out.append(Broken(inv.hosts_file, 1, FENCE_LAYER, c.id, f"no inventory host has the address {fqdn}"))
            continue
        variables, origin = inv.variables(host)
        variables = strip_lines({**(defaults if isinstance(defaults, dict) else {}), **variables})
        try:
            dest = render(args.get("dest", ""), variables)
            content = render(args.get("content", ""), variables)
        except Exception as exc:  # what Ansible could not render either
            out.append(Broken(tasks_rel, task.get("__line__", 1), FENCE_LAYER, c.id,
                              f"host {host}: the fence's drop-in does not render: {exc}"))
            break
        unit = f"patroni@{variables.get('postgresql_version')}-main"
        m = _FENCE_DROPIN.match(dest)
        if not m or m.group("instance") != unit.removeprefix("patroni@"):
            out.append(Broken(tasks_rel, task.get("__line__", 1), FENCE_LAYER, c.id,
                              f"host {host}: the fence's drop-in {dest} is not one of the region's cluster ({unit})"))
            break
        # a line ending in a backslash goes on in the next (systemd.syntax(7))
        lines = [line.split("=", 1)[1] for line in content.replace("\\\n", " ").splitlines()
                 if line.startswith("ExecStartPre=")]
        argv = shlex.split(lines[0].lstrip("+-@!:")) if lines else []
        urls = sorted(a for a in argv[1:] if a.startswith("https://"))
        if urls != want:
            rel = origin.get("patroni_fence", tasks_rel)
            out.append(Broken(rel, tree.line_of(rel, "patroni_fence:") if rel != tasks_rel else task.get("__line__", 1),
                              FENCE_LAYER, c.id, f"host {host}'s fence asks {', '.join(urls) or 'nothing'}, not the "
                              f"standby cluster's members {', '.join(want)}"))
            break
        script = argv[0] if argv else ""
        installed = [t for t in copies if t["ansible.builtin.copy"].get("dest") == script
                     and tree.exists(f"{PATRONI_ROLE}/files/{t['ansible.builtin.copy'].get('src', '')}")]
        if not installed:
            out.append(Broken(tasks_rel, task.get("__line__", 1), FENCE_LAYER, c.id,
                              f"the drop-in runs {script or 'nothing'}, which no task installs from the role's files"))
            break
        ca = argv[argv.index("--ca") + 1] if "--ca" in argv[:-1] else ""
        written = [t for t in copies if ca and render.quietly(t["ansible.builtin.copy"].get("dest"), variables) == ca]
        if c.tls and not written:
            out.append(Broken(tasks_rel, task.get("__line__", 1), FENCE_LAYER, c.id,
                              f"host {host}'s fence does not verify the partner's certificates (--ca "
                              f"{ca or 'missing'}: no task writes it)"))
            break
    return out


class _Renderer:
    """Renders the tasks' Jinja texts with a host's variables, compiling each text once per tree: the fence check
    renders the same few texts for every member of every region (compiling them each time was a third of `verify`)."""

    def __init__(self, env):
        self.env, self.compiled = env, {}

    def __call__(self, text, variables) -> str:
        text = str(text or "")
        template = self.compiled.get(text)
        if template is None:
            template = self.compiled[text] = self.env.from_string(text)
        return template.render(**variables)

    def quietly(self, text, variables) -> str | None:
        """The text rendered, or None where Ansible could not render it either."""
        try:
            return self(text, variables)
        except Exception:
            return None
