"""Verify checker: the infrastructure layers, read back from generated/terraform/** alone.

- `cloud-firewall`: every connection through a cloud firewall is admitted there. To a host group: a rule
  of the region root's `ingress_rules` (AWS security groups, Azure NSG rules; GCP: the network module's
  firewall rules by target tag) covers every source range on the destination port, for every host the
  connection reaches (hosts found by FQDN in the root's `hosts`), and the module applies those inputs. Through a
  PostgreSQL endpoint whose load balancer delivers to another port than the one dialled (Azure's, the root's
  postgres_endpoints backend_port), on that port: the cloud firewall filters before the host redirects it.
  The CDN to the load balancer: AWS admits CloudFront's origin-facing prefix list on the listener port and
  nothing from the whole Internet; Azure's gateway subnet admits the port; GCP's front end listens on it.
  The load balancer to Kong: the node/pod firewall admits the load balancer on Kong's port.
- `cdn`: the edge the global root holds (CloudFront, Front Door or Cloud CDN): its viewer TLS minimum meets
  the client hop's floor and it serves the host; its origin (name, port, HTTPS only) is the region's load
  balancer, and the TLS versions the CDN may use to the origin intersect the versions the region's listener
  accepts; the CDN's end is not below the floor, the listener admits the CDN's TLS and nothing below the lowest
  TLS of the connections arriving at it. Front Door's origins are the regions' own names; CloudFront's and
  Cloud CDN's origin is the weighted name origin.<domain>, which must list the region. The origin secret
  (CloudFront): the origin sends the header the region's WAF requires, with the current value of the global root's
  secret, which the region root reads and hands its WAF; a global root that makes the secret has every region
  require it; the WAF module applies the check as the root assumes.
- `health-check`: the health checkers that probe the region's load balancer directly (Route 53's, for the global
  weighted records; the AWS internal gateway's NLB) are configured to probe it over HTTPS, and its listener accepts
  the TLS they speak (at most 1.2: compiler/ir/edge.py), and where the WAF requires the origin secret, the path
  they probe is the one it exempts (they cannot add a header). The origin listener accepts every arriving connection's TLS
  and nothing below the lowest of them (never below 1.2): checked for each connection arriving at it.
- object level: the enforcing CNI is switched on in each region's cluster module (layer `cni`), and the
  CDN sets the client-address header Kong reads (layer `cdn`): a CloudFront Function, a Front Door rule of
  the route's rule set, or the Cloud CDN backend service's custom request header.

The Terraform files are read with a small exact reader of the HCL the target writes (python-hcl2 takes
about 0.1 s a file, too slow for the whole tree); values that are expressions come back as their text.

CloudFront and TLS 1.3 to origins: `origin_ssl_protocols` takes SSLv3 to TLSv1.2 (the API's valid values)
and is the floor CloudFront accepts; since November 2025 CloudFront also negotiates TLS 1.3 with every
custom origin that offers it, without a setting (AWS Networking & Content Delivery blog, "Amazon
CloudFront: Delivering millisecond performance to global audiences", "TLS 1.3 to origins"; Classmethod,
dev.classmethod.jp/articles/cloudfront-tls13-origin-support, checked in ALB access logs). So CloudFront's
versions to an origin are the listed ones plus 1.3.

Front Door to origins: TLS 1.2 and 1.3 (Microsoft Learn, Azure Front Door "TLS policy": "Front Door supports TLS
1.2 and TLS 1.3 for origin connections"). Google's load balancers to backends: TLS 1.3 and, for 1.2 and below,
the COMPATIBLE profile (Cloud Load Balancing, "Encryption from the load balancer to the backends"), with no
setting to narrow it: the region's listener holds the floor.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import re
from functools import lru_cache

from compiler.ir.edge import FRONT_DOOR_ID_HEADER, LISTENER_TLS_FLOOR, NLB_HEALTH_CHECKS_PEER, ROUTE53_HEALTH_CHECKS_PEER
from compiler.ir.home_routing import HOME_EDGE_PEER, HOME_ORIGIN_PREFIX, home_origin_id
from compiler.verify import Broken, Result

LAYERS = ("cloud-firewall", "cdn", "health-check")
CNI_LAYER = "cni"

TF = "terraform"
GLOBAL_CDN = f"{TF}/global/cdn.tf"
GLOBAL_MAIN = f"{TF}/global/main.tf"
CLOUDFRONT_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"
ROUTE53_HEALTH_CHECK_RANGES = "route53_healthchecks"  # the service's name in aws_ip_ranges (ip-ranges.json)
HEALTH_CHECKERS = {ROUTE53_HEALTH_CHECKS_PEER: "Route 53 health checkers",
                   NLB_HEALTH_CHECKS_PEER: "the internal gateway's health checks"}

VERSIONS = ("ssl3", "1.0", "1.1", "1.2", "1.3")


def _from(v: str) -> set[str]:
    return set(VERSIONS[VERSIONS.index(v):]) if v in VERSIONS else set()


# CloudFront -> origin: the listed protocols, plus TLS 1.3 which it negotiates whenever the origin offers it.
CLOUDFRONT_ORIGIN = {"SSLv3": "ssl3", "TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2"}
CLOUDFRONT_VIEWER = {"SSLv3": "ssl3", "TLSv1": "1.0", "TLSv1_2016": "1.0", "TLSv1.1_2016": "1.1", "TLSv1.2_2018": "1.2",
                     "TLSv1.2_2019": "1.2", "TLSv1.2_2021": "1.2", "TLSv1.2_2025": "1.2", "TLSv1.3_2025": "1.3"}


FRONT_DOOR_VIEWER = {"TLS10": "1.0", "TLS12": "1.2", "TLS13": "1.3"}
FRONT_DOOR_ORIGIN = {"1.2", "1.3"}
GOOGLE_VIEWER = {"TLS_1_0": "1.0", "TLS_1_1": "1.1", "TLS_1_2": "1.2", "TLS_1_3": "1.3"}
GOOGLE_ORIGIN = {"1.0", "1.1", "1.2", "1.3"}
GLOBAL_DNS = f"{TF}/global/dns.tf"


def aws_policy_versions(name: str) -> set[str]:
    """Versions an ELB security policy accepts (ELBSecurityPolicy-TLS13-1-3-2021-06: 1.3 only)."""
    m = re.search(r"TLS13-1-(\d)", name)
    if m:
        return _from(f"1.{m.group(1)}")
    m = re.search(r"TLS-1-(\d)", name)
    if m:
        return _from(f"1.{m.group(1)}") - {"1.3"}
    if re.fullmatch(r"ELBSecurityPolicy-20\d\d-\d\d", name):
        return {"1.0", "1.1", "1.2"}
    return set()


def min_version_versions(value: str) -> set[str]:
    """GCP SSL policy min_tls_version (TLS_1_2) or Azure's min_protocol_version (TLSv1_2): that and above."""
    m = re.fullmatch(r"TLS(?:v)?_?1_(\d)", value or "")
    return _from(f"1.{m.group(1)}") if m else set()


def _floor(tls: str) -> str:
    return tls if tls in VERSIONS else "1.2"


# ---------------------------------------------------------------- a small exact HCL reader

class Expr(str):
    """An expression kept as its source text (module.x.y, var.z, function calls, for expressions)."""


class Obj(dict):
    def __init__(self):
        super().__init__()
        self.lines: dict = {}


class Lst(list):
    def __init__(self):
        super().__init__()
        self.lines: list = []


class Block:
    def __init__(self, type_: str, labels: list, line: int):
        self.type, self.labels, self.line = type_, labels, line
        self.attrs = Obj()
        self.blocks: list[Block] = []

    def block(self, type_: str, *labels) -> "Block | None":
        return next((b for b in self.blocks if b.type == type_ and tuple(b.labels[:len(labels)]) == labels), None)

    def all(self, type_: str) -> list["Block"]:
        return [b for b in self.blocks if b.type == type_]

    def get(self, name, default=None):
        return self.attrs.get(name, default)

    def line_of(self, name) -> int:
        return self.attrs.lines.get(name, self.line)


# The reader's scanning is done by these patterns, a stretch of text at a time: character by character in Python it
# was most of the reading (~0.1 s for the reference tree's 60 .tf files).
_WS = re.compile(r"(?:[ \t\r\n]+|#[^\n]*|//[^\n]*|/\*(?:/|[\s\S]*?\*/|[\s\S]*))*")
_WS_LINE = re.compile(r"(?:[ \t\r]+|#[^\n]*|//[^\n]*|/\*(?:/|[\s\S]*?\*/|[\s\S]*))*")  # stops at a line's end
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_\-]*|"(?:[^"\\]|\\.)*"')
_STRING_STOP = re.compile(r'[\\"$%}]')
_RAW_STOP = re.compile(r'["<(\[{)\]},\n#]')
_HEREDOC = re.compile(r"<<-?([A-Za-z_]+)\n")
_FOR_OBJECT = re.compile(r"\{\s*for\s")
_FOR = re.compile(r"for\s")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_CLOSE = {"(": ")", "[": "]", "{": "}"}


class _Reader:
    def __init__(self, text: str):
        self.s, self.i, self.n = text, 0, len(text)
        self.nl = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos=None) -> int:
        return bisect.bisect_left(self.nl, self.i if pos is None else pos) + 1

    def ws(self, newlines=True):
        """Past blanks and comments (a comment to the end of its line; without newlines, up to the line's end)."""
        self.i = (_WS if newlines else _WS_LINE).match(self.s, self.i).end()

    def ident(self) -> str:
        m = _NAME.match(self.s, self.i)
        if not m:
            raise ValueError(f"line {self.line()}: expected a name")
        self.i = m.end()
        t = m.group(0)
        return t[1:-1] if t.startswith('"') else t

    def body(self, parent: Block):
        while True:
            self.ws()
            if self.i >= self.n or self.s[self.i] == "}":
                return
            line = self.line()
            name = self.ident()
            self.ws(newlines=False)
            if self.s[self.i] == "=" and not self.s.startswith("==", self.i):
                self.i += 1
                parent.attrs[name] = self.value()
                parent.attrs.lines[name] = line
                continue
            labels = []
            while self.s[self.i] != "{":
                labels.append(self.ident())
                self.ws(newlines=False)
            self.i += 1
            b = Block(name, labels, line)
            self.body(b)
            self.i += 1  # }
            parent.blocks.append(b)

    def string(self) -> str:
        """A quoted string's value: escapes read outside interpolations, `${...}` and `%{...}` kept as written."""
        s, i, depth, out = self.s, self.i + 1, 0, []
        stop = _STRING_STOP.search
        while True:
            m = stop(s, i)
            if m is None:
                raise IndexError("string index out of range")  # unterminated: what indexing past the end raised
            j = m.start()
            if j > i:
                out.append(s[i:j])
            c = s[j]
            if c == "\\" and depth == 0:
                out.append(_ESCAPES.get(s[j + 1], s[j + 1]))
                i = j + 2
                continue
            if c in "$%" and s.startswith("{", j + 1):
                depth += 1
                out.append(s[j:j + 2])
                i = j + 2
                continue
            if c == "}" and depth:
                depth -= 1
            elif c == '"' and depth == 0:
                self.i = j + 1
                return "".join(out)
            out.append(c)
            i = j + 1

    def raw(self) -> Expr:
        """An expression up to the end of the line, a comma or a closing bracket at depth 0."""
        s, start, stack = self.s, self.i, []
        stop = _RAW_STOP.search
        i = start
        while True:
            m = stop(s, i)
            if m is None:
                i = self.n
                break
            i = m.start()
            c = s[i]
            if c == '"':
                self.i = i
                self.string()
                i = self.i
                continue
            if c == "<":
                h = _HEREDOC.match(s, i) if s.startswith("<<", i) else None
                if h:
                    end = re.compile(rf"^\s*{h.group(1)}\s*$", re.M).search(s, h.end())
                    i = end.end() if end else self.n
                else:
                    i += 1
                continue
            if c in "([{":
                stack.append(_CLOSE[c])
            elif c in ")]}":
                if not stack:
                    break
                stack.pop()
            elif not stack:  # a comma, a line's end or a comment
                break
            i += 1
        self.i = i
        return Expr(" ".join(s[start:i].split()))

    def value(self):
        self.ws(newlines=False)
        s, start = self.s, self.i
        c = s[self.i]
        try:
            if c == '"':
                v = self.string()
                self.ws(newlines=False)
                if self.i < self.n and s[self.i] not in "\n,]})#":
                    raise ValueError("an expression")
                return v
            if c == "[":
                return self.list_()
            if c == "{" and not _FOR_OBJECT.match(s, self.i):
                return self.object_()
        except (ValueError, IndexError):
            self.i = start
        v = self.raw()
        if _NUMBER.fullmatch(v):
            return float(v) if "." in v else int(v)
        return {"true": True, "false": False, "null": None}.get(v, v)

    def list_(self) -> Lst:
        out = Lst()
        self.i += 1
        while True:
            self.ws()
            if self.s[self.i] == "]":
                self.i += 1
                return out
            if _FOR.match(self.s, self.i):
                raise ValueError("a for expression")
            line, at = self.line(), self.i
            out.append(self.value())
            out.lines.append(line)
            self.ws()
            if self.s[self.i] == ",":
                self.i += 1
            elif self.i == at and self.s[self.i] != "]":
                # an item that reads as nothing (`[ ) ]`): not a list; without this the loop never moved on
                raise ValueError("not a list")

    def object_(self) -> Obj:
        out = Obj()
        self.i += 1
        while True:
            self.ws()
            if self.s[self.i] == "}":
                self.i += 1
                return out
            line = self.line()
            key = self.ident() if self.s[self.i] != "(" else str(self.raw())
            self.ws(newlines=False)
            if self.s[self.i] not in "=:":
                raise ValueError("not an object")
            self.i += 1
            out[key] = self.value()
            out.lines[key] = line
            self.ws()
            if self.i < self.n and self.s[self.i] == ",":
                self.i += 1


def read_hcl(text: str) -> Block:
    root = Block("file", [], 1)
    r = _Reader(text)
    r.body(root)
    return root


def _doc(tree, rel: str) -> Block | None:
    cache = tree.__dict__.setdefault("_infra_hcl", {})
    if rel not in cache:
        text = tree.text(rel)
        try:
            cache[rel] = read_hcl(text) if text is not None else None
        except (ValueError, IndexError) as exc:  # the reader's slip: the file's to fix, not platformc's bug
            from compiler.verify import VerifyError
            raise VerifyError(f"{rel}: not readable as HCL ({exc})") from None
    return cache[rel]


def workload_identity(block, ns: str, sa: str):
    """(owner, entry) of the workload_identity module call's identity for ServiceAccount ns/sa, (None, None) if none."""
    idents = block.get("identities") if block is not None else None
    for owner, entry in (idents or {}).items():
        if isinstance(entry, dict) and entry.get("namespace") == ns and entry.get("service_account") == sa:
            return owner, entry
    return None, None


def library_lacks(tree, rel: str, snippets) -> str | None:
    """The first of `snippets` a module library file no longer contains (white space folded), None if it has all: the
    module-call entries a checker reads mean what it assumes only while the library uses them so."""
    text = " ".join((tree.text(rel) or "").split())
    return next((x for x in snippets if " ".join(x.split()) not in text), None)


def _norm(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_norm(x) for x in v) + "]"
    return " ".join(str(v).split())


# ---------------------------------------------------------------- helpers

@lru_cache(maxsize=4096)
def _net(cidr: str):
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def _covered(sources, admitted) -> list[str]:
    """The source ranges no admitted range contains."""
    nets = [n for n in (_net(a) for a in admitted) if n is not None]
    out = []
    for s in sources:
        n = _net(s)
        if n is None or not any(n.version == a.version and n.subnet_of(a) for a in nets):
            out.append(s)
    return out


def _port_in(port: int, spec) -> bool:
    spec = str(spec)
    if spec in ("*", "all"):
        return True
    lo, _, hi = spec.partition("-")
    try:
        return int(lo) <= port <= int(hi or lo)
    except ValueError:
        return False


class _Region:
    """One region root: its modules by name and where their files are."""

    def __init__(self, tree, region: str):
        self.rel = f"{TF}/regions/{region}/main.tf"
        self.doc = _doc(tree, self.rel)
        self.modules = {b.labels[0]: b for b in (self.doc.all("module") if self.doc else [])}
        self.cloud = tree.region_info(region).get("cloud", "")
        self.tree = tree
        self.tree_region = region
        self.arriving: tuple = ()  # the connections that end at its load balancer (check() fills it)

    def module_file(self, name: str) -> str | None:
        m = self.modules.get(name)
        src = m.get("source") if m else None
        if not isinstance(src, str) or not src.startswith("../../modules/"):
            return None
        return f"{TF}/{src[len('../../'):]}/main.tf"

    def module_doc(self, name: str) -> tuple[str | None, Block | None]:
        rel = self.module_file(name)
        return rel, (_doc(self.tree, rel) if rel else None)


def _resource(doc: Block | None, rtype: str, name: str | None = None) -> Block | None:
    if doc is None:
        return None
    return next((b for b in doc.blocks if b.type == "resource" and b.labels[0] == rtype
                 and (name is None or b.labels[1] == name)), None)


# ---------------------------------------------------------------- cloud-firewall: host groups

def arrival_ports(reg: _Region) -> dict[str, int]:
    """PostgreSQL endpoint FQDN -> the members' port its load balancer delivers to, where the root names one other
    than the port dialled (data_hosts.postgres_endpoints backend_port: Azure's endpoints share one load balancer, each
    rule delivering to a port of its own that the members redirect to PostgreSQL's, compiler/ir/postgres_ha.py). A
    cloud firewall in front of the hosts filters the packets on that port, before the host's redirect."""
    dh = reg.modules.get("data_hosts")
    eps = dh.get("postgres_endpoints") if dh else None
    return {e.get("fqdn"): e.get("backend_port") for e in (eps.values() if isinstance(eps, Obj) else [])
            if isinstance(e, Obj) and isinstance(e.get("backend_port"), int) and e.get("backend_port") != e.get("port")}


def _host_rules(reg: _Region):
    """(fqdn -> (group key, rules file, rules, line of the group's rules)) and the source of the rules,
    per cloud; rules are (ports spec list, cidrs)."""
    dh = reg.modules.get("data_hosts")
    if dh is None:
        return None, f"no module \"data_hosts\" in {reg.rel}", 0
    hosts = dh.get("hosts")
    if not isinstance(hosts, Obj):
        return None, "data_hosts.hosts is not a map", dh.line
    if reg.cloud == "gcp":
        net = reg.modules.get("network")
        rules = net.get("ingress_rules") if net else None
        if not isinstance(rules, Lst):
            return None, "network.ingress_rules is not a list", (net.line if net else 0)
        by_tag: dict[str, list] = {}
        for i, r in enumerate(rules):
            if isinstance(r, Obj):
                by_tag.setdefault(r.get("target_tag"), []).append(
                    (list(r.get("ports") or []), list(r.get("source_ranges") or []), rules.lines[i]))
        key = "target_tag"
        line_all = net.line_of("ingress_rules")
    else:
        rules = dh.get("ingress_rules")
        if not isinstance(rules, Obj):
            return None, "data_hosts.ingress_rules is not a map", dh.line
        by_tag = {}
        for group, lst in rules.items():
            for i, r in enumerate(lst if isinstance(lst, Lst) else []):
                if isinstance(r, Obj):
                    ports = [f"{r.get('from_port')}-{r.get('to_port')}"]
                    by_tag.setdefault(group, []).append((ports, list(r.get("cidr_blocks") or []), lst.lines[i]))
        key = "group"
        line_all = dh.line_of("ingress_rules")
    fqdn = {}
    for name, h in hosts.items():
        if isinstance(h, Obj):
            fqdn[h.get("fqdn")] = (h.get(key), hosts.lines[name])
    group_line = {}
    if reg.cloud != "gcp":
        group_line = {g: rules.lines.get(g, line_all) for g in rules}
    else:
        for tag, rs in by_tag.items():
            group_line[tag] = rs[0][2]
    return (fqdn, by_tag, group_line, line_all, arrival_ports(reg)), "", 0


def _acl_rules(reg: _Region) -> list[tuple[str, int, int]]:
    """(source range, first port, last port) of every TCP (or all-protocol) inbound entry of the AWS private
    subnets' network ACL: the network module's fixed entries, and its peer_ingress entries as the root passes them."""
    rel = reg.module_file("network")
    doc = _doc(reg.tree, rel) if rel else None
    acl = _resource(doc, "aws_network_acl", "private")
    net = reg.modules.get("network")
    out = []
    for b in acl.blocks if acl else []:
        if b.type == "ingress" and str(b.get("action")) == "allow" and str(b.get("protocol")) in ("tcp", "-1"):
            lo, hi = b.get("from_port"), b.get("to_port")
            cidr = str(b.get("cidr_block"))
            if cidr == "var.cidr":  # the VPC's range, as the root passes it
                cidr = str(net.get("cidr")) if net else ""
            if isinstance(lo, int) and isinstance(hi, int):
                out.append((cidr, *((0, 65535) if str(b.get("protocol")) == "-1" else (lo, hi))))
        elif b.type == "dynamic" and b.labels[:1] == ["ingress"] and "var.peer_ingress" in str(b.get("for_each")):
            net = reg.modules.get("network")
            entries = net.get("peer_ingress") if net else None
            out += [(str(e.get("cidr_block")), e.get("port"), e.get("port"))
                    for e in (entries if isinstance(entries, Lst) else []) if isinstance(e, Obj)]
    return out


def acl_misses(reg: _Region, sources, port: int) -> list[str]:
    """The source ranges the AWS private subnets' network ACL drops on `port`/tcp (stateless: no security group
    opens what it drops)."""
    return _covered(sources, [cidr for cidr, lo, hi in _acl_rules(reg) if isinstance(lo, int) and lo <= port <= hi])


def _check_hosts(reg: _Region, c, state) -> list[Broken]:
    if state[0] is None:
        return [Broken(reg.rel, state[2], "cloud-firewall", c.id, state[1])]
    fqdn, by_tag, group_line, line_all, arrives = state[0]
    port = arrives.get(c.address, c.dest_port)  # through an endpoint that delivers elsewhere: that port
    out = []
    seen = set()
    for h in c.dest.hosts:
        if h not in fqdn:
            out.append(Broken(reg.rel, line_all, "cloud-firewall", c.id, f"host {h} is not in the root's data_hosts"))
            continue
        tag = fqdn[h][0]
        if tag in seen:
            continue
        seen.add(tag)
        rules = [r for r in by_tag.get(tag, []) if any(_port_in(port, p) for p in r[0])]
        missing = _covered(c.source.cidrs, [cidr for r in rules for cidr in r[1]])
        if missing:
            via = f" (the port {c.address}'s load balancer delivers to)" if port != c.dest_port else ""
            detail = (f"no rule on the {tag} hosts admits {', '.join(missing)} on {port}/tcp{via}" if rules else
                      f"no rule on the {tag} hosts opens {port}/tcp{via} (sources {', '.join(c.source.cidrs)})")
            line = rules[0][2] if rules else group_line.get(tag, line_all)  # the rule that falls short, else the group
            out.append(Broken(reg.rel, line, "cloud-firewall", c.id, detail))
    if reg.cloud == "aws" and "inter-region" not in c.layers:  # the peering's flows: interregion.py
        missing = acl_misses(reg, c.source.cidrs, port)
        if missing:
            net = reg.modules.get("network")
            out.append(Broken(reg.rel, net.line if net else line_all, "cloud-firewall", c.id,
                              f"the private subnets' network ACL (network.peer_ingress) admits no "
                              f"{', '.join(missing)} on {port}/tcp"))
    return out


def _module_applies_host_rules(reg: _Region) -> list[Broken]:
    """The module turns the root's inputs into firewall rules on the hosts (a template mistake shows here)."""
    out = []
    if reg.cloud == "aws":
        rel, doc = reg.module_doc("data_hosts")
        sg = _resource(doc, "aws_security_group", "group")
        dyn = sg.block("dynamic", "ingress") if sg else None
        content = dyn.block("content") if dyn else None
        want = {"from_port": "ingress.value.from_port", "to_port": "ingress.value.to_port",
                "cidr_blocks": "ingress.value.cidr_blocks"}
        if not dyn or _norm(dyn.get("for_each")) != "var.ingress_rules[each.key]" or not content or \
                any(_norm(content.get(k)) != v for k, v in want.items()):
            out.append(Broken(rel or reg.rel, (dyn or sg or doc or Block("", [], 0)).line if doc else 0,
                              "cloud-firewall", "data_hosts module",
                              "aws_security_group.group does not apply var.ingress_rules (for_each, ports, cidr_blocks)"))
        inst = _resource(doc, "aws_instance", "host")
        if not inst or "aws_security_group.group[each.value.group].id" not in _norm(inst.get("vpc_security_group_ids")):
            out.append(Broken(rel or reg.rel, inst.line if inst else 0, "cloud-firewall", "data_hosts module",
                              "the hosts do not carry their group's security group"))
    elif reg.cloud == "azure":
        rel, doc = reg.module_doc("data_hosts")
        rule = _resource(doc, "azurerm_network_security_rule", "ingress")
        ok = rule is not None and rule.get("access") == "Allow" and rule.get("direction") == "Inbound" and \
            _norm(rule.get("source_address_prefixes")) == "each.value.cidr_blocks" and \
            "each.value.from_port" in _norm(rule.get("destination_port_range")) and \
            "azurerm_application_security_group.group[each.value.group].id" in _norm(
                rule.get("destination_application_security_group_ids"))
        if not ok:
            out.append(Broken(rel or reg.rel, rule.line if rule else 0, "cloud-firewall", "data_hosts module",
                              "azurerm_network_security_rule.ingress does not apply var.ingress_rules to the groups"))
        assoc = _resource(doc, "azurerm_network_interface_application_security_group_association")
        if not assoc or "each.value.group" not in _norm(assoc.get("application_security_group_id")):
            out.append(Broken(rel or reg.rel, assoc.line if assoc else 0, "cloud-firewall", "data_hosts module",
                              "the hosts' interfaces do not join their group's application security group"))
    elif reg.cloud == "gcp":
        rel, doc = reg.module_doc("network")
        fw = _resource(doc, "google_compute_firewall", "hosts")
        allow = fw.block("allow") if fw else None
        ok = fw is not None and fw.get("direction") == "INGRESS" and allow is not None and \
            _norm(allow.get("ports")) == "each.value.ports" and \
            _norm(fw.get("source_ranges")) == "each.value.source_ranges" and \
            "each.value.target_tag" in _norm(fw.get("target_tags"))
        if not ok:
            out.append(Broken(rel or reg.rel, fw.line if fw else 0, "cloud-firewall", "network module",
                              "google_compute_firewall.hosts does not apply var.ingress_rules"))
        rel, doc = reg.module_doc("data_hosts")
        inst = _resource(doc, "google_compute_instance", "host")
        if not inst or "each.value.target_tag" not in _norm(inst.get("tags")):
            out.append(Broken(rel or reg.rel, inst.line if inst else 0, "cloud-firewall", "data_hosts module",
                              "the hosts do not carry their group's network tag"))
    return out


# ---------------------------------------------------------------- cloud-firewall: the public entry

def _check_cdn_to_lb(reg: _Region, c) -> list[Broken]:
    L = "cloud-firewall"
    rel, doc = reg.module_doc("load_balancer")
    if doc is None:
        return [Broken(reg.rel, 0, L, c.id, "no load_balancer module")]
    if reg.cloud == "aws":
        lb = _resource(doc, "aws_lb")
        groups = re.findall(r"aws_security_group\.([A-Za-z0-9_-]+)\.id", _norm(lb.get("security_groups"))) if lb else []
        port = reg.modules["load_balancer"].get("listener_port")
        listener = _resource(doc, "aws_lb_listener")
        out = []
        if not listener or not (listener.get("port") == c.dest_port or
                                (_norm(listener.get("port")) == "var.listener_port" and port == c.dest_port)):
            out.append(Broken(rel, listener.line if listener else 0, L, c.id, f"the ALB does not listen on {c.dest_port}"))
        pls = {b.labels[1]: b.get("name") for b in doc.blocks
               if b.type == "data" and b.labels[0] == "aws_ec2_managed_prefix_list"}
        cloudfront_ok = False
        for g in groups:
            sg = _resource(doc, "aws_security_group", g)
            for ing in (sg.all("ingress") if sg else []):
                fp = port if _norm(ing.get("from_port")) == "var.listener_port" else ing.get("from_port")
                tp = port if _norm(ing.get("to_port")) == "var.listener_port" else ing.get("to_port")
                if not (isinstance(fp, int) and isinstance(tp, int) and fp <= c.dest_port <= tp):
                    continue
                cidrs = ing.get("cidr_blocks")
                if isinstance(cidrs, list) and any(_net(x) and _net(x).prefixlen == 0 for x in cidrs):
                    out.append(Broken(rel, ing.line, L, c.id, f"security group {g} admits the whole Internet on "
                                                               f"{c.dest_port}: clients reach the origin around the CDN"))
                for ref in re.findall(r"data\.aws_ec2_managed_prefix_list\.([A-Za-z0-9_-]+)\.id", _norm(ing.get("prefix_list_ids"))):
                    if pls.get(ref) == CLOUDFRONT_PREFIX_LIST:
                        cloudfront_ok = True
        if not cloudfront_ok:
            out.append(Broken(rel, lb.line if lb else 0, L, c.id,
                              f"no security group of the ALB admits {CLOUDFRONT_PREFIX_LIST} on {c.dest_port}"))
        return out
    if reg.cloud == "gcp":
        fr = _resource(doc, "google_compute_global_forwarding_rule")
        if not fr or not _port_in(c.dest_port, fr.get("port_range")):
            return [Broken(rel, fr.line if fr else 0, L, c.id, f"the global forwarding rule does not take {c.dest_port}")]
        return []
    if reg.cloud == "azure":
        nrel, ndoc = reg.module_doc("network")
        nsg = _resource(ndoc, "azurerm_network_security_group", "gateway")
        front_door = _edge_kind(_global(reg.tree)[0]) == "front_door"
        # Front Door reaches the gateway from its service tag, and then nothing else may; CloudFront has no
        # Azure service tag, so the gateway admits the Internet
        want = ("AzureFrontDoor.Backend",) if front_door else ("Internet", "*")
        admitted, out = False, []
        for rule in (nsg.all("security_rule") if nsg else []):
            if rule.get("access") == "Allow" and rule.get("direction") == "Inbound" and \
                    _port_in(c.dest_port, rule.get("destination_port_range")):
                source = rule.get("source_address_prefix")
                if source in want:
                    admitted = True
                elif front_door and (source in ("Internet", "*") or _covered(["0.0.0.0/0"], rule.get("source_address_prefixes") or []) == []):
                    out.append(Broken(nrel, rule.line, L, c.id, f"the Application Gateway's NSG admits the Internet on "
                                                                f"{c.dest_port}: clients reach the origin around Front Door"))
        if not admitted:
            out.append(Broken(nrel or reg.rel, nsg.line if nsg else 0, L, c.id,
                              f"the Application Gateway's NSG does not admit {want[0]} (the CDN) on {c.dest_port}"))
        return out
    return []


def _check_kube_api(reg: _Region, c) -> list[Broken]:
    """The cluster's private API endpoint admits the connection's sources (the bastion, operators' path). EKS: the
    kubernetes module's `api` rule on the cluster security group, for each of api_client_cidrs, on the port dialled.
    GKE: the master authorized networks (api_allowed_cidrs). AKS: a private cluster, reachable from its VNet."""
    L = "cloud-firewall"
    mod = reg.modules.get("kubernetes")
    rel, doc = reg.module_doc("kubernetes")
    if mod is None:
        return [Broken(reg.rel, 0, L, c.id, "no kubernetes module")]
    if reg.cloud == "aws":
        out = []
        rule = _resource(doc, "aws_vpc_security_group_ingress_rule", "api")
        if rule is None:
            return [Broken(rel or reg.rel, 0, L, c.id, "no ingress rule for the API on the cluster security group")]
        if _norm(rule.get("for_each")) != "toset(var.api_client_cidrs)" or _norm(rule.get("cidr_ipv4")) != "each.value" \
                or "cluster_security_group_id" not in _norm(rule.get("security_group_id")):
            out.append(Broken(rel, rule.line, L, c.id, "the API rule does not admit api_client_cidrs on the cluster "
                                                       "security group"))
        if not (rule.get("from_port") == c.dest_port == rule.get("to_port")):
            out.append(Broken(rel, rule.line, L, c.id, f"the API rule opens {rule.get('from_port')}-"
                                                       f"{rule.get('to_port')}, not {c.dest_port}"))
        missing = _covered(c.source.cidrs, mod.get("api_client_cidrs") or [])
        if missing:
            out.append(Broken(reg.rel, mod.line_of("api_client_cidrs"), L, c.id,
                              f"the cluster security group does not admit {', '.join(missing)}"))
        return out
    if reg.cloud == "gcp":
        missing = _covered(c.source.cidrs, mod.get("api_allowed_cidrs") or [])
        return [Broken(reg.rel, mod.line_of("api_allowed_cidrs"), L, c.id,
                       f"the master authorized networks do not admit {', '.join(missing)}")] if missing else []
    if reg.cloud == "azure":
        if mod.get("private_endpoint") is True:
            return []
        missing = _covered(c.source.cidrs, mod.get("api_allowed_cidrs") or [])
        return [Broken(reg.rel, mod.line_of("api_allowed_cidrs"), L, c.id,
                       f"the API server's authorized ranges do not admit {', '.join(missing)}")] if missing else []
    return []


def _check_lb_to_kong(reg: _Region, c) -> list[Broken]:
    L = "cloud-firewall"
    if reg.cloud == "aws":
        mod = reg.modules.get("load_balancer")
        rel, doc = reg.module_doc("load_balancer")
        rule = _resource(doc, "aws_vpc_security_group_ingress_rule", "kong")
        out = []
        if mod is None or rule is None:
            return [Broken(rel or reg.rel, 0, L, c.id, "no ingress rule for the ALB on the pods' security group")]
        port = mod.get("target_port") if _norm(rule.get("from_port")) == "var.target_port" else rule.get("from_port")
        if port != c.dest_port:
            out.append(Broken(reg.rel, mod.line_of("target_port"), L, c.id, f"the pods' rule opens {port}, not {c.dest_port}"))
        lb = _resource(doc, "aws_lb")
        ref = re.search(r"aws_security_group\.([A-Za-z0-9_-]+)\.id", _norm(rule.get("referenced_security_group_id")))
        if not ref or not lb or f"aws_security_group.{ref.group(1)}.id" not in _norm(lb.get("security_groups")):
            out.append(Broken(rel, rule.line, L, c.id, "the pods' rule does not admit the ALB's security group"))
        if "module.kubernetes." not in _norm(mod.get("target_security_group_id")):
            out.append(Broken(reg.rel, mod.line_of("target_security_group_id"), L, c.id,
                              "the rule is not placed on the cluster's security group"))
        return out
    if reg.cloud == "gcp":
        net = reg.modules.get("network")
        rel, doc = reg.module_doc("network")
        fw = _resource(doc, "google_compute_firewall", "load_balancer")
        out = []
        if net is None or fw is None:
            return [Broken(rel or reg.rel, 0, L, c.id, "no firewall rule for the load balancer on the nodes")]
        allow = fw.block("allow")
        if not allow or _norm(allow.get("ports")) != "[tostring(var.lb_target_port)]" or \
                _norm(fw.get("source_ranges")) != "var.lb_source_ranges":
            out.append(Broken(rel, fw.line, L, c.id, "google_compute_firewall.load_balancer does not apply its inputs"))
        if net.get("lb_target_port") != c.dest_port:
            out.append(Broken(reg.rel, net.line_of("lb_target_port"), L, c.id,
                              f"the nodes' firewall opens {net.get('lb_target_port')}, not {c.dest_port}"))
        missing = _covered(c.source.cidrs, net.get("lb_source_ranges") or [])
        if missing:
            out.append(Broken(reg.rel, net.line_of("lb_source_ranges"), L, c.id,
                              f"the nodes' firewall does not admit {', '.join(missing)}"))
        return out
    if reg.cloud == "azure":
        net = reg.modules.get("network")
        rel, doc = reg.module_doc("network")
        nsg = _resource(doc, "azurerm_network_security_group", "private")
        rule = next((r for r in (nsg.all("security_rule") if nsg else [])
                     if r.get("access") == "Allow" and _norm(r.get("destination_port_range")) == "tostring(var.lb_target_port)"
                     and _norm(r.get("source_address_prefixes")) == "var.lb_source_cidrs"), None)
        if net is None or rule is None:
            return [Broken(rel or reg.rel, nsg.line if nsg else 0, L, c.id,
                           "the cluster subnets' NSG has no rule for the Application Gateway on Kong's port")]
        out = []
        if net.get("lb_target_port") != c.dest_port:
            out.append(Broken(reg.rel, net.line_of("lb_target_port"), L, c.id,
                              f"the NSG opens {net.get('lb_target_port')}, not {c.dest_port}"))
        missing = _covered(c.source.cidrs, net.get("lb_source_cidrs") or [])
        if missing:
            out.append(Broken(reg.rel, net.line_of("lb_source_cidrs"), L, c.id, f"the NSG does not admit {', '.join(missing)}"))
        return out
    return []


# ---------------------------------------------------------------- cdn

def _global(tree):
    cache = tree.__dict__.setdefault("_infra_global", {})
    if "v" not in cache:
        cdn, main = _doc(tree, GLOBAL_CDN), _doc(tree, GLOBAL_MAIN)
        dist = _resource(cdn, "aws_cloudfront_distribution")
        cache["v"] = (cdn, _locals(main), dist)
    return cache["v"]


def _locals(doc: Block | None) -> dict:
    """Every `locals` attribute of a file (a root may have several blocks)."""
    out = {}
    for b in (doc.all("locals") if doc else []):
        out.update(b.attrs)
    return out


def _subst(value, loc) -> str:
    return re.sub(r"\$\{local\.([A-Za-z0-9_]+)\}", lambda m: str(loc.get(m.group(1), m.group(0))), str(value))


def _local(value, loc):
    m = re.fullmatch(r"local\.([A-Za-z0-9_]+)", _norm(value))
    return loc.get(m.group(1)) if m else value


def _origin_versions(reg: _Region) -> tuple[set[str], str, int]:
    """What the region's origin listener accepts, with where that is set."""
    mod = reg.modules.get("load_balancer")
    if mod is None:
        return set(), reg.rel, 0
    if reg.cloud == "aws":
        return aws_policy_versions(str(mod.get("ssl_policy"))), reg.rel, mod.line_of("ssl_policy")
    return min_version_versions(str(mod.get("min_tls_version"))), reg.rel, mod.line_of("min_tls_version")


def _origin_module_wired(reg: _Region) -> list[tuple[str, int, str]]:
    rel, doc = reg.module_doc("load_balancer")
    if doc is None:
        return [(reg.rel, 0, "no load_balancer module")]
    if reg.cloud == "aws":
        lst = _resource(doc, "aws_lb_listener")
        if not lst or _norm(lst.get("ssl_policy")) != "var.ssl_policy" or lst.get("protocol") != "HTTPS":
            return [(rel, lst.line if lst else 0, "the HTTPS listener does not use var.ssl_policy")]
    elif reg.cloud == "gcp":
        pol = _resource(doc, "google_compute_ssl_policy")
        proxy = _resource(doc, "google_compute_target_https_proxy")
        if not pol or _norm(pol.get("min_tls_version")) != "var.min_tls_version" or not proxy or \
                f"google_compute_ssl_policy.{pol.labels[1]}.id" != _norm(proxy.get("ssl_policy")):
            return [(rel, pol.line if pol else 0, "the HTTPS proxy's SSL policy does not take var.min_tls_version")]
    elif reg.cloud == "azure":
        gw = _resource(doc, "azurerm_application_gateway")
        pol = gw.block("ssl_policy") if gw else None
        if not pol or _norm(pol.get("min_protocol_version")) != "var.min_tls_version":
            return [(rel, gw.line if gw else 0, "the gateway's ssl_policy does not take var.min_tls_version")]
    return []


def _edge_kind(cdn: Block | None) -> str | None:
    """Which CDN the global root holds."""
    if _resource(cdn, "aws_cloudfront_distribution"):
        return "cloudfront"
    if _resource(cdn, "azurerm_cdn_frontdoor_profile"):
        return "front_door"
    if any(b.type == "resource" and b.labels[0] == "google_compute_backend_service" and b.get("enable_cdn") is True
           for b in (cdn.blocks if cdn else [])):
        return "cloud_cdn"
    return None


def _listener_floor(reg: _Region) -> str:
    """The lowest TLS the origin listener may accept: the lowest any connection arriving at it needs, never below
    LISTENER_TLS_FLOOR (what the compiler sets: compiler/ir/edge.py origin_listener_min_tls)."""
    needs = [_floor(x.tls) for x in reg.arriving] or [LISTENER_TLS_FLOOR]
    return max(min(needs, key=VERSIONS.index), LISTENER_TLS_FLOOR, key=VERSIONS.index)


def _listener_admits(reg: _Region, c, who: str, L: str) -> list[Broken]:
    """The origin listener accepts c's TLS and nothing below the lowest TLS of the connections arriving at it."""
    versions, rel, vline = _origin_versions(reg)
    if not versions:
        return [Broken(rel, vline, L, c.id, "the origin listener's TLS policy is unknown")]
    out = []
    floor, need = _listener_floor(reg), _floor(c.tls)
    lowest = min(versions, key=VERSIONS.index)
    if VERSIONS.index(lowest) < VERSIONS.index(floor):
        out.append(Broken(rel, vline, L, c.id, f"the origin listener accepts TLS {lowest}, below {floor} "
                                               "(the lowest TLS of the connections arriving at it)"))
    if need not in versions:
        out.append(Broken(rel, vline, L, c.id, f"{who} cannot connect over TLS {need}: the origin listener accepts "
                                               f"TLS {', '.join(sorted(versions, key=VERSIONS.index))} only"))
    return out


def _listener_against(reg: _Region, c, cdn_versions: set[str], who: str) -> list[Broken]:
    """The region's origin listener: admitting the CDN's TLS and no lower than its clients need, sharing a version
    with the CDN, wired to its inputs."""
    L = "cdn"
    out = _listener_admits(reg, c, who, L)
    versions, rel, vline = _origin_versions(reg)
    if versions and not versions & cdn_versions:
        out.append(Broken(rel, vline, L, c.id, f"{who} ({', '.join(sorted(cdn_versions))}) and the origin listener "
                                               f"({', '.join(sorted(versions))}) share no TLS version"))
    out += [Broken(f, ln, L, c.id, msg) for f, ln, msg in _origin_module_wired(reg)]
    return out


def _public_hosts(loc) -> list[str]:
    return [f"{h}.{loc.get('domain')}" for h in (loc.get("public_hosts") or [])]


def _check_front_door(cdn: Block, loc, reg: _Region, c) -> list[Broken]:
    L = "cdn"
    floor = _floor(c.tls)
    out = []
    route = _resource(cdn, "azurerm_cdn_frontdoor_route")
    if route is None:
        return [Broken(GLOBAL_CDN, 0, L, c.id, "no Front Door route")]
    if c.source.name == HOME_EDGE_PEER:
        return (_check_front_door_home(cdn, loc, route, reg, c) + _front_door_id_required(cdn, loc, reg, c)
                + _listener_against(reg, c, FRONT_DOOR_ORIGIN, "Front Door"))
    if c.source.kind == "external":  # clients -> Front Door: the custom domains of the route
        dom = _resource(cdn, "azurerm_cdn_frontdoor_custom_domain")
        if dom is None or f"azurerm_cdn_frontdoor_custom_domain.{dom.labels[1]}" not in _norm(route.get("cdn_frontdoor_custom_domain_ids")):
            return [Broken(GLOBAL_CDN, route.line, L, c.id, "the route serves no custom domain")]
        tls = dom.block("tls")
        value = _local(tls.get("minimum_tls_version"), loc) if tls else None
        v = FRONT_DOOR_VIEWER.get(str(value))
        if v is None or VERSIONS.index(v) < VERSIONS.index(floor):
            out.append(Broken(GLOBAL_CDN, tls.line_of("minimum_tls_version") if tls else dom.line, L, c.id,
                              f"Front Door's minimum TLS {value} admits TLS below {floor}"))
        hosts = _public_hosts(loc) if _norm(dom.get("for_each")) == "toset(local.public_hosts)" and \
            _subst(dom.get("host_name"), loc) == "${each.key}." + str(loc.get("domain")) else []
        if c.address not in hosts:
            out.append(Broken(GLOBAL_CDN, dom.line_of("host_name"), L, c.id, f"Front Door does not serve {c.address}"))
        return out
    origin = _resource(cdn, "azurerm_cdn_frontdoor_origin")
    regions = loc.get("regions") or {}
    entry = regions.get(reg.tree_region) if isinstance(regions, dict) else None
    if origin is None or _norm(origin.get("for_each")) != "local.regions" or _norm(origin.get("host_name")) != "each.value.hostname":
        return [Broken(GLOBAL_CDN, origin.line if origin else 0, L, c.id, "the Front Door origins are not the regions' names")]
    if not isinstance(entry, dict) or entry.get("hostname") != c.address:
        return [Broken(GLOBAL_MAIN, 0, L, c.id, f"no Front Door origin is {c.address}")]
    if origin.get("https_port") != c.port:
        out.append(Broken(GLOBAL_CDN, origin.line_of("https_port"), L, c.id, f"Front Door does not connect on {c.port}"))
    if route.get("forwarding_protocol") != "HttpsOnly":
        out.append(Broken(GLOBAL_CDN, route.line_of("forwarding_protocol"), L, c.id, "Front Door does not forward with HTTPS only"))
    if origin.get("certificate_name_check_enabled") is not True:
        out.append(Broken(GLOBAL_CDN, origin.line_of("certificate_name_check_enabled"), L, c.id,
                          "Front Door does not check the origin's certificate name"))
    if origin.get("enabled") is False or not isinstance(entry.get("weight"), int) or entry["weight"] < 1:
        out.append(Broken(GLOBAL_MAIN, 0, L, c.id, f"the origin {c.address} takes no traffic (disabled or weight below 1)"))
    return out + _front_door_id_required(cdn, loc, reg, c) + _listener_against(reg, c, FRONT_DOOR_ORIGIN, "Front Door")


def _front_door_id_required(cdn: Block, loc, reg: _Region, c) -> list[Broken]:
    """An Azure region behind Front Door requires the id Front Door sends (X-Azure-FDID) to be this edge's profile's:
    every Front Door customer connects from the same AzureFrontDoor.Backend addresses the region admits."""
    L = "cdn"
    if reg.cloud != "azure":
        return []
    header, _exempt, mod = _waf_requires(reg)
    if header != FRONT_DOOR_ID_HEADER.lower():
        return [Broken(reg.rel, mod.line if mod else 0, L, c.id, f"the region's WAF does not require {FRONT_DOOR_ID_HEADER}"
                       " to be this edge's profile: any Front Door reaches its gateway around the edge")]
    profile = _resource(cdn, "azurerm_cdn_frontdoor_profile")
    want = _local(profile.get("name"), loc) if profile else None
    group = _resource(_doc(reg.tree, GLOBAL_MAIN), "azurerm_resource_group", "edge")
    in_group = _local(group.get("name"), loc) if group and \
        _norm(profile.get("resource_group_name")) == "azurerm_resource_group.edge.name" else None
    data = next((b for b in reg.doc.blocks if b.type == "data" and b.labels == ["azurerm_cdn_frontdoor_profile", "edge"]),
                None)
    out = []
    if data is None or want is None or data.get("name") != want or data.get("resource_group_name") != in_group:
        out.append(Broken(reg.rel, data.line if data else 0, L, c.id,
                          f"the region does not read the id of the edge's Front Door profile {want} ({in_group})"))
    if _norm(mod.get("origin_verify_values")) != "[data.azurerm_cdn_frontdoor_profile.edge.resource_guid]":
        out.append(Broken(reg.rel, mod.line_of("origin_verify_values"), L, c.id,
                          "the WAF's required values are not the edge profile's id"))
    rel = reg.module_file("waf")
    missing = library_lacks(reg.tree, rel, WAF_MODULE_USES["azure"]) if rel else "the waf module"
    if missing:
        out.append(Broken(rel or reg.rel, 0, L, c.id, f"the WAF module does not apply the origin check as the root "
                          f"assumes (no `{missing}`)"))
    return out


def _home_target(kind: str, region: str) -> str:
    """The expression a home rule names its target with (compiler/targets/terraform/edge_rules.py)."""
    return f'{kind}.home[local.serving["{region}"]].id'


def _home_hostname(loc, reg: _Region, c, L: str) -> list[Broken]:
    regions = loc.get("regions") or {}
    entry = regions.get(reg.tree_region) if isinstance(regions, dict) else None
    if not isinstance(entry, dict) or entry.get("hostname") != c.address:
        return [Broken(GLOBAL_MAIN, 0, L, c.id, f"local.regions does not name {reg.tree_region} {c.address}")]
    return []


def _check_front_door_home(cdn: Block, loc, route: Block, reg: _Region, c) -> list[Broken]:
    """Home-region routing at Front Door: the region's own origin group (one origin, its public name, HTTPS, name
    checked) and a rule of the route's rule sets that matches the franchise id header and overrides the origin
    group with it."""
    L = "cdn"
    out = _home_hostname(loc, reg, c, L)
    origin = _resource(cdn, "azurerm_cdn_frontdoor_origin", "home")
    group = _resource(cdn, "azurerm_cdn_frontdoor_origin_group", "home")
    if origin is None or group is None or _norm(origin.get("for_each")) != "local.regions" \
            or _norm(group.get("for_each")) != "local.regions" or _norm(origin.get("host_name")) != "each.value.hostname" \
            or _norm(origin.get("cdn_frontdoor_origin_group_id")) != "azurerm_cdn_frontdoor_origin_group.home[each.key].id":
        return out + [Broken(GLOBAL_CDN, origin.line if origin else 0, L, c.id,
                             f"no Front Door origin group home-<region> holds {c.address}")]
    if origin.get("https_port") != c.port:
        out.append(Broken(GLOBAL_CDN, origin.line_of("https_port"), L, c.id, f"Front Door does not connect on {c.port}"))
    if origin.get("certificate_name_check_enabled") is not True:
        out.append(Broken(GLOBAL_CDN, origin.line_of("certificate_name_check_enabled"), L, c.id,
                          "Front Door does not check the home origin's certificate name"))
    if origin.get("enabled") is False:
        out.append(Broken(GLOBAL_CDN, origin.line_of("enabled"), L, c.id, f"the origin {c.address} is disabled"))
    sets = re.findall(r"azurerm_cdn_frontdoor_rule_set\.([A-Za-z0-9_-]+)\.id", _norm(route.get("cdn_frontdoor_rule_set_ids")))
    want = _home_target("azurerm_cdn_frontdoor_origin_group", reg.tree_region)
    for b in cdn.blocks:
        if b.type != "resource" or b.labels[0] != "azurerm_cdn_frontdoor_rule":
            continue
        m = re.fullmatch(r"azurerm_cdn_frontdoor_rule_set\.([A-Za-z0-9_-]+)\.id", _norm(b.get("cdn_frontdoor_rule_set_id")))
        conds, acts = b.block("conditions"), b.block("actions")
        over = acts.block("route_configuration_override_action") if acts else None
        if not m or m.group(1) not in sets or not over or _norm(over.get("cdn_frontdoor_origin_group_id")) != want:
            continue
        headers = [h for h in (conds.all("request_header_condition") if conds else [])
                   if h.get("operator") == "RegEx" and h.get("match_values") and not h.get("negate_condition")]
        if not headers:
            out.append(Broken(GLOBAL_CDN, b.line, L, c.id, f"the rule sending {reg.tree_region}'s franchises to its "
                                                           "origin group matches no franchise id header"))
        elif over.get("forwarding_protocol") != "HttpsOnly":
            out.append(Broken(GLOBAL_CDN, over.line_of("forwarding_protocol"), L, c.id,
                              "Front Door does not forward to the home origin group with HTTPS only"))
        return out
    return out + [Broken(GLOBAL_CDN, route.line_of("cdn_frontdoor_rule_set_ids"), L, c.id,
                         f"no rule of the route's rule sets sends {reg.tree_region}'s franchises to home-{reg.tree_region}")]


def _check_cloud_cdn_home(cdn: Block, loc, weighted: Block, reg: _Region, c) -> list[Broken]:
    """Home-region routing at Cloud CDN: the region's own backend service (an internet NEG at its public name, over
    HTTPS, with the weighted backend's Cloud Armor policy) and a route rule of the URL map sending a franchise id
    range to it."""
    L = "cdn"
    out = _home_hostname(loc, reg, c, L)
    ep = _resource(cdn, "google_compute_global_network_endpoint", "home")
    bs = _resource(cdn, "google_compute_backend_service", "home")
    neg = "google_compute_global_network_endpoint_group.home[each.key].id"
    if ep is None or bs is None or _norm(ep.get("for_each")) != "local.regions" or _norm(bs.get("for_each")) != "local.regions" \
            or _norm(ep.get("fqdn")) != "each.value.hostname" or _norm(ep.get("global_network_endpoint_group")) != neg:
        return out + [Broken(GLOBAL_CDN, ep.line if ep else 0, L, c.id, f"no backend service home-<region> reaches {c.address}")]
    if ep.get("port") != c.port:
        out.append(Broken(GLOBAL_CDN, ep.line_of("port"), L, c.id, f"the CDN connects on {ep.get('port')}, not {c.port}"))
    if bs.get("protocol") != "HTTPS" or neg not in [_norm(b.get("group")) for b in bs.all("backend")]:
        out.append(Broken(GLOBAL_CDN, bs.line_of("protocol"), L, c.id, "the home backend service does not reach its NEG over HTTPS"))
    if _norm(bs.get("security_policy")) != _norm(weighted.get("security_policy")):
        out.append(Broken(GLOBAL_CDN, bs.line_of("security_policy"), L, c.id,
                          "the home backend service has not the edge's Cloud Armor policy"))
    want = _home_target("google_compute_backend_service", reg.tree_region)
    um = next((b for b in cdn.blocks if b.type == "resource" and b.labels[0] == "google_compute_url_map"
               and _norm(b.get("default_service")) == f"google_compute_backend_service.{weighted.labels[1]}.id"), None)
    for pm in (um.all("path_matcher") if um else []):
        for rr in pm.all("route_rules"):
            if _norm(rr.get("service")) != want:
                continue
            ranged = [h for m in rr.all("match_rules") for h in m.all("header_matches") if h.block("range_match")]
            if not ranged:
                out.append(Broken(GLOBAL_CDN, rr.line, L, c.id, f"the route rule sending {reg.tree_region}'s franchises "
                                                                "to its backend matches no franchise id range"))
            return out
    return out + [Broken(GLOBAL_CDN, um.line if um else 0, L, c.id,
                         f"no route rule of the URL map sends {reg.tree_region}'s franchises to home-{reg.tree_region}")]


def _check_cloud_cdn(tree, cdn: Block, loc, reg: _Region, c) -> list[Broken]:
    L = "cdn"
    floor = _floor(c.tls)
    out = []
    bs = next(b for b in cdn.blocks if b.type == "resource" and b.labels[0] == "google_compute_backend_service"
              and b.get("enable_cdn") is True)
    if c.source.name == HOME_EDGE_PEER:
        return _check_cloud_cdn_home(cdn, loc, bs, reg, c) + _listener_against(reg, c, GOOGLE_ORIGIN, "Google's load balancer")
    if c.source.kind == "external":  # clients -> the edge load balancer
        proxy = _resource(cdn, "google_compute_target_https_proxy")
        pol = _resource(cdn, "google_compute_ssl_policy")
        if not proxy or not pol or _norm(proxy.get("ssl_policy")) != f"google_compute_ssl_policy.{pol.labels[1]}.id":
            return [Broken(GLOBAL_CDN, proxy.line if proxy else 0, L, c.id, "the HTTPS proxy has no SSL policy")]
        value = _local(pol.get("min_tls_version"), loc)
        v = GOOGLE_VIEWER.get(str(value))
        if v is None or VERSIONS.index(v) < VERSIONS.index(floor):
            out.append(Broken(GLOBAL_CDN, pol.line_of("min_tls_version"), L, c.id, f"the SSL policy's {value} admits TLS below {floor}"))
        cert = _resource(cdn, "google_certificate_manager_certificate")
        managed = cert.block("managed") if cert else None
        hosts = _public_hosts(loc) if managed and _norm(managed.get("domains")) == '[for h in local.public_hosts : "${h}.${local.domain}"]' else []
        if c.address not in hosts:
            out.append(Broken(GLOBAL_CDN, cert.line if cert else proxy.line, L, c.id, f"the edge certificate does not cover {c.address}"))
        fr = next((b for b in cdn.blocks if b.type == "resource" and b.labels[0] == "google_compute_global_forwarding_rule"
                   and _norm(b.get("target")) == f"google_compute_target_https_proxy.{proxy.labels[1]}.id"), None)
        if not fr or not _port_in(c.port, fr.get("port_range")):
            out.append(Broken(GLOBAL_CDN, fr.line if fr else proxy.line, L, c.id, f"no forwarding rule takes {c.port} to the HTTPS proxy"))
        return out
    ep = _resource(cdn, "google_compute_global_network_endpoint")
    if ep is None or _subst(ep.get("fqdn"), loc) != c.address:
        return [Broken(GLOBAL_CDN, ep.line if ep else bs.line, L, c.id, f"the CDN's internet NEG does not name {c.address}")]
    neg = re.fullmatch(r"google_compute_global_network_endpoint_group\.([A-Za-z0-9_-]+)\.id", _norm(ep.get("global_network_endpoint_group")))
    if ep.get("port") != c.port:
        out.append(Broken(GLOBAL_CDN, ep.line_of("port"), L, c.id, f"the CDN connects on {ep.get('port')}, not {c.port}"))
    backends = [_norm(b.get("group")) for b in bs.all("backend")]
    if bs.get("protocol") != "HTTPS" or not neg or f"google_compute_global_network_endpoint_group.{neg.group(1)}.id" not in backends:
        out.append(Broken(GLOBAL_CDN, bs.line_of("protocol"), L, c.id, "the CDN's backend service does not reach the origin over HTTPS"))
    # origin.<domain> lists this region's address, and the region's load balancer uses that address
    dns = _doc(tree, GLOBAL_DNS)
    rec = next((b for b in (dns.blocks if dns else []) if b.type == "resource" and b.labels[0] == "google_dns_record_set"
                and _subst(b.get("name"), loc) == c.address + "."), None)
    regions = loc.get("regions") or {}
    entry = regions.get(reg.tree_region) if isinstance(regions, dict) else None
    pol = rec.block("routing_policy") if rec else None
    wrr = pol.block("dynamic", "wrr") if pol else None
    if not rec or not wrr or _norm(wrr.get("for_each")) != "local.regions" or not isinstance(entry, dict):
        out.append(Broken(GLOBAL_DNS, rec.line if rec else 0, L, c.id, f"{c.address} does not list {reg.tree_region}"))
    else:
        mod = reg.modules.get("load_balancer")
        if mod is None or _local(mod.get("name"), _locals(reg.doc)) != entry.get("lb_name"):
            out.append(Broken(reg.rel, mod.line_of("name") if mod else 0, L, c.id,
                              f"the load balancer is not named {entry.get('lb_name')}, the address the global root reserves"))
        else:
            rel, doc = reg.module_doc("load_balancer")
            data = next((b for b in (doc.blocks if doc else []) if b.type == "data" and b.labels[0] == "google_compute_global_address"), None)
            fr = _resource(doc, "google_compute_global_forwarding_rule")
            if not data or _norm(data.get("name")) != "var.name" or not fr or \
                    _norm(fr.get("ip_address")) != f"data.google_compute_global_address.{data.labels[1]}.id":
                out.append(Broken(rel or reg.rel, fr.line if fr else 0, L, c.id,
                                  "the load balancer does not listen on the address the global root reserves for it"))
    return out + _listener_against(reg, c, GOOGLE_ORIGIN, "Google's load balancer")


def _check_cdn(tree, reg: _Region, c) -> list[Broken]:
    L = "cdn"
    cdn, loc, dist = _global(tree)
    kind = _edge_kind(cdn)
    if kind == "front_door":
        return _check_front_door(cdn, loc, reg, c)
    if kind == "cloud_cdn":
        return _check_cloud_cdn(tree, cdn, loc, reg, c)
    if dist is None:
        return [Broken(GLOBAL_CDN, 0, L, c.id, "no CDN (CloudFront, Front Door or Cloud CDN) in the global root")]
    floor = _floor(c.tls)
    out = []
    if c.source.kind == "external":  # clients -> CDN: the viewer side
        vc = dist.block("viewer_certificate")
        policy = _local(vc.get("minimum_protocol_version"), loc) if vc else None
        v = CLOUDFRONT_VIEWER.get(str(policy))
        if v is None or VERSIONS.index(v) < VERSIONS.index(floor):
            out.append(Broken(GLOBAL_CDN, vc.line_of("minimum_protocol_version") if vc else dist.line, L, c.id,
                              f"viewer policy {policy} admits TLS below {floor}"))
        hosts = [f"{h}.{loc.get('domain')}" for h in (loc.get("public_hosts") or [])]
        if c.address not in hosts:
            out.append(Broken(GLOBAL_CDN, dist.line_of("aliases"), L, c.id, f"CloudFront does not serve {c.address}"))
        return out
    origin = next((o for o in dist.all("origin") if _subst(o.get("domain_name"), loc) == c.address), None)
    if origin is None:
        return [Broken(GLOBAL_CDN, dist.line, L, c.id, f"no CloudFront origin is {c.address}")]
    if c.source.name == HOME_EDGE_PEER:
        out += _check_home_origin(cdn, dist, origin, reg.tree_region, c)
    out += _origin_secret_sent(tree, cdn, loc, origin, reg, c)
    coc = origin.block("custom_origin_config")
    if coc is None:
        return [Broken(GLOBAL_CDN, origin.line, L, c.id, "the origin has no custom_origin_config")]
    if coc.get("https_port") != c.port or coc.get("origin_protocol_policy") != "https-only":
        out.append(Broken(GLOBAL_CDN, coc.line_of("origin_protocol_policy"), L, c.id,
                          f"CloudFront does not connect with HTTPS only on {c.port}"))
    listed = [CLOUDFRONT_ORIGIN.get(p) for p in (coc.get("origin_ssl_protocols") or [])]
    cf = {v for v in listed if v} | {"1.3"}
    cf_floor = min(floor, "1.2", key=VERSIONS.index)  # the highest floor CloudFront can state is TLSv1.2
    low = sorted((v for v in listed if v and VERSIONS.index(v) < VERSIONS.index(cf_floor)), key=VERSIONS.index)
    line = coc.line_of("origin_ssl_protocols")
    if None in listed or not listed:
        out.append(Broken(GLOBAL_CDN, line, L, c.id, "origin_ssl_protocols names no protocol CloudFront knows"))
    if low:
        out.append(Broken(GLOBAL_CDN, line, L, c.id, f"CloudFront may fall back to {low[0]} to the origin, below {cf_floor}"))
    return out + _listener_against(reg, c, cf, "CloudFront")


# The origin secret (compiler/ir/edge.py: origin_verify): what each region root and WAF module must say for a request
# CloudFront sends to pass the region's WAF.
ORIGIN_SECRET = ("aws_secretsmanager_secret", "origin_verify")
ORIGIN_SECRET_READ = "jsondecode(data.aws_secretsmanager_secret_version.origin_verify.secret_string)"
WAF_MODULE_USES = {
    "aws": ('single_header { name = rule.value }', "arn = aws_wafv2_regex_pattern_set.origin_verify[0].arn",
            'regex_string = "^${regular_expression.value}$"', "for_each = toset(var.origin_verify_values)",
            "search_string = var.origin_verify_exempt_path"),
    "gcp": ("has(request.headers['${rule.value}'])", "request.path != '${var.origin_verify_exempt_path}'",
            "request.headers['${rule.value}'] == '${v}'"),
    "azure": ("match_values = var.origin_verify_values", "selector = custom_rules.value",
              "match_values = [var.origin_verify_exempt_path]"),
}


def _waf_requires(reg: _Region) -> tuple[str, str, Block | None]:
    """(header, exempt path, the waf module call) the region's WAF requires the origin secret with ("" if it does not)."""
    mod = reg.modules.get("waf")
    if mod is None:
        return "", "", None
    return str(mod.get("origin_verify_header") or ""), str(mod.get("origin_verify_exempt_path") or ""), mod


def _origin_secret_sent(tree, cdn: Block, loc, origin: Block, reg: _Region, c) -> list[Broken]:
    """A request CloudFront sends passes the region's WAF: the origin adds the header the WAF requires, with the
    current value of the secret the region reads; and a global root that makes the secret has every region require
    it (else any CloudFront distribution reaches the region around the edge)."""
    L = "cdn"
    secret = _resource(cdn, *ORIGIN_SECRET)
    header, _exempt, mod = _waf_requires(reg)
    if not header:
        if secret is not None:
            return [Broken(reg.rel, mod.line if mod else 0, L, c.id, "the region's WAF does not require the edge's "
                           "origin secret: any CloudFront distribution reaches its load balancer around the edge")]
        return []
    out = []
    sent = [h for h in origin.all("custom_header") if str(h.get("name", "")).lower() == header]
    want = f"{ORIGIN_SECRET_READ}.current"
    if not sent or _norm(_local(sent[0].get("value"), _locals(cdn))) != want:
        out.append(Broken(GLOBAL_CDN, (sent[0].line if sent else origin.line), L, c.id,
                          f"CloudFront does not send {header} with the origin secret's current value to {c.address}, "
                          "which the region's WAF requires"))
    if secret is None:
        return out + [Broken(GLOBAL_CDN, 0, L, c.id, "the global root makes no origin secret the region could read")]
    data = next((b for b in reg.doc.blocks if b.type == "data" and b.labels == ["aws_secretsmanager_secret_version",
                                                                                 "origin_verify"]), None)
    region_of = _global_provider_region(tree)
    if data is None or data.get("secret_id") != secret.get("name") or data.get("region") != region_of:
        out.append(Broken(reg.rel, data.line if data else 0, L, c.id,
                          f"the region does not read the global root's origin secret {secret.get('name')} in {region_of}"))
    values = _norm(mod.get("origin_verify_values"))
    if _norm(_locals(reg.doc).get("origin_verify")) != ORIGIN_SECRET_READ or "local.origin_verify.current" not in values:
        out.append(Broken(reg.rel, mod.line_of("origin_verify_values"), L, c.id,
                          "the WAF's origin secret values are not the current value the region reads"))
    rel = reg.module_file("waf")
    missing = library_lacks(tree, rel, WAF_MODULE_USES.get(reg.cloud, ())) if rel else "the waf module"
    if missing:
        out.append(Broken(rel or reg.rel, 0, L, c.id, f"the WAF module does not apply the origin check as the root "
                          f"assumes (no `{missing}`)"))
    return out


def _global_provider_region(tree) -> str | None:
    doc = _doc(tree, f"{TF}/global/providers.tf")
    p = next((b for b in (doc.all("provider") if doc else []) if b.labels == ["aws"] and not b.get("alias")), None)
    return p.get("region") if p else None


def _probe_exempt(tree, reg: _Region, c, who: str) -> list[Broken]:
    """The health checkers cannot add the origin secret: the path they probe is the one the WAF exempts."""
    header, exempt, mod = _waf_requires(reg)
    if not header:
        return []
    if c.source.name == ROUTE53_HEALTH_CHECKS_PEER:
        hc = _resource(_doc(tree, GLOBAL_DNS), "aws_route53_health_check")
        path = _local(hc.get("resource_path"), _global(tree)[1]) if hc else None
    else:
        tg = _resource(reg.module_doc("load_balancer")[1], "aws_lb_target_group", "internal_gateway")
        hc = tg.block("health_check") if tg else None
        raw = hc.get("path") if hc else None
        path = reg.modules["load_balancer"].get("health_check_path") if _norm(raw) == "var.health_check_path" else raw
    if path != exempt:
        return [Broken(reg.rel, mod.line_of("origin_verify_exempt_path"), "health-check", c.id,
                       f"{who} probe {path}, but the WAF exempts only {exempt or 'nothing'} from the origin secret: "
                       "every probe is blocked")]
    return []


def _viewer_request_code(cdn: Block, dist: Block) -> tuple[str, int]:
    """The code of the function the default cache behavior runs on viewer requests, and its line."""
    fns = {b.labels[1]: b for b in cdn.blocks if b.type == "resource" and b.labels[0] == "aws_cloudfront_function"}
    dcb = dist.block("default_cache_behavior")
    for a in (dcb.all("function_association") if dcb else []):
        m = re.fullmatch(r"aws_cloudfront_function\.([A-Za-z0-9_-]+)\.arn", _norm(a.get("function_arn")))
        if a.get("event_type") == "viewer-request" and m and m.group(1) in fns:
            fn = fns[m.group(1)]
            return str(fn.get("code")), fn.line_of("code")
    return "", dcb.line if dcb else dist.line


def _check_home_origin(cdn: Block, dist: Block, origin: Block, region: str, c) -> list[Broken]:
    """Home-region routing at the edge: the region's origin has the id the viewer-request function selects, and
    the function selects home origins by id and lists the region among the homes."""
    L = "cdn"
    out = []
    if origin.get("origin_id") != home_origin_id(region):
        out.append(Broken(GLOBAL_CDN, origin.line_of("origin_id"), L, c.id,
                          f"the origin {c.address} is not {home_origin_id(region)}, the id the function selects"))
    code, line = _viewer_request_code(cdn, dist)
    m = re.search(r"var REGIONS = (\[[^\]]*\]);", code)
    regions = json.loads(m.group(1)) if m else []
    if f"cf.selectRequestOriginById({json.dumps(HOME_ORIGIN_PREFIX)} + " not in code or region not in regions:
        out.append(Broken(GLOBAL_CDN, line, L, c.id,
                          f"the viewer-request function does not select {home_origin_id(region)} for {region}'s franchises"))
    return out


def _edge_header(cdn: Block, kind: str, res: Result) -> str | None:
    """The header Front Door or Cloud CDN overwrites with the client's address (None, with a finding, if none)."""
    L = "cdn"
    if kind == "front_door":
        route = _resource(cdn, "azurerm_cdn_frontdoor_route")
        sets = re.findall(r"azurerm_cdn_frontdoor_rule_set\.([A-Za-z0-9_-]+)\.id", _norm(route.get("cdn_frontdoor_rule_set_ids")) if route else "")
        for b in cdn.blocks:
            if b.type != "resource" or b.labels[0] != "azurerm_cdn_frontdoor_rule":
                continue
            m = re.fullmatch(r"azurerm_cdn_frontdoor_rule_set\.([A-Za-z0-9_-]+)\.id", _norm(b.get("cdn_frontdoor_rule_set_id")))
            if not m or m.group(1) not in sets or b.block("conditions"):
                continue  # a rule of a set the route does not run, or one that applies only to some requests
            acts = b.block("actions")
            for a in (acts.all("request_header_action") if acts else []):
                if a.get("header_action") == "Overwrite" and a.get("value") == "{client_ip}":
                    return str(a.get("header_name")).lower()
        res.broken.append(Broken(GLOBAL_CDN, route.line if route else 0, L, res.connection,
                                 "no rule of the route's rule sets overwrites a header with {client_ip}"))
        return None
    bs = next(b for b in cdn.blocks if b.type == "resource" and b.labels[0] == "google_compute_backend_service"
              and b.get("enable_cdn") is True)
    for h in (bs.get("custom_request_headers") or []):
        m = re.fullmatch(r"([A-Za-z0-9-]+):\s*\{client_ip_address\}", str(h))
        if m:
            return m.group(1).lower()
    res.broken.append(Broken(GLOBAL_CDN, bs.line_of("custom_request_headers"), L, res.connection,
                             "the CDN's backend service sets no header to {client_ip_address}"))
    return None


def _kong_reads(tree, region: str, header: str, res: Result, who: str) -> None:
    values = f"helm/{region}/kong.values.yaml"
    text = tree.text(values)
    if text is not None:
        m = re.search(r"^\s*real_ip_header:\s*(\S+)", text, re.M)
        if m and m.group(1).strip("\"'").lower() != header:
            res.broken.append(Broken(values, tree.line_of(values, "real_ip_header:"), "cdn", res.connection,
                                     f"Kong reads the client address from {m.group(1)}; {who} sets {header}"))


def _check_client_address(tree, region: str) -> Result:
    """The CDN overwrites the client-address header with the viewer's IP, and Kong reads that header."""
    L = "cdn"
    res = Result(L, "client address header")
    cdn, loc, dist = _global(tree)
    kind = _edge_kind(cdn)
    if kind in ("front_door", "cloud_cdn"):
        header = _edge_header(cdn, kind, res)
        if header is not None:
            _kong_reads(tree, region, header, res, {"front_door": "Front Door", "cloud_cdn": "the CDN"}[kind])
        return res
    if dist is None:
        return res
    fns = {b.labels[1]: b for b in cdn.blocks if b.type == "resource" and b.labels[0] == "aws_cloudfront_function"}
    dcb = dist.block("default_cache_behavior")
    assoc = [a for a in (dcb.all("function_association") if dcb else []) if a.get("event_type") == "viewer-request"]
    header = None
    for a in assoc:
        m = re.fullmatch(r"aws_cloudfront_function\.([A-Za-z0-9_-]+)\.arn", _norm(a.get("function_arn")))
        fn = fns.get(m.group(1)) if m else None
        code = str(fn.get("code")) if fn else ""
        h = re.search(r"""headers\[["']([a-z0-9-]+)["']\]\s*=\s*\{\s*value:\s*event\.viewer\.ip\s*\}""", code)
        if h:
            header = h.group(1)
    if header is None:
        res.broken.append(Broken(GLOBAL_CDN, dcb.line if dcb else dist.line, L, res.connection,
                                 "no viewer-request function sets a header to the viewer's IP"))
        return res
    _kong_reads(tree, region, header, res, "CloudFront")
    return res


# ---------------------------------------------------------------- health-check: probers of the load balancer

def _check_health_check(tree, reg: _Region, c) -> list[Broken]:
    """The prober is set up to probe the region's load balancer over HTTPS, and the listener accepts its TLS."""
    L = "health-check"
    who = HEALTH_CHECKERS.get(c.source.name)
    if who is None:
        return [Broken(reg.rel, 0, L, c.id, f"verify knows no health checker {c.source.name}")]
    probes = _route53_probes(tree, reg, c) if c.source.name == ROUTE53_HEALTH_CHECKS_PEER else _nlb_probes(reg, c)
    return probes + _listener_admits(reg, c, who, L) + _probe_exempt(tree, reg, c, who)


def _route53_probes(tree, reg: _Region, c) -> list[Broken]:
    L = "health-check"
    dns = _doc(tree, GLOBAL_DNS)
    hc = _resource(dns, "aws_route53_health_check")
    if hc is None or _norm(hc.get("for_each")) != "local.regions" or _norm(hc.get("fqdn")) != "each.value.hostname":
        return [Broken(GLOBAL_DNS, hc.line if hc else 0, L, c.id, "no Route 53 health check probes each region's name")]
    out = _home_hostname(_global(tree)[1], reg, c, L)
    if hc.get("type") != "HTTPS" or hc.get("port") != c.port:
        out.append(Broken(GLOBAL_DNS, hc.line_of("type"), L, c.id, f"the health checks do not probe HTTPS on {c.port}"))
    return out


def _nlb_probes(reg: _Region, c) -> list[Broken]:
    L = "health-check"
    rel, doc = reg.module_doc("load_balancer")
    tg = _resource(doc, "aws_lb_target_group", "internal_gateway")
    hc = tg.block("health_check") if tg else None
    if not hc or hc.get("protocol") != "HTTPS" or tg.get("target_type") != "alb":
        return [Broken(rel or reg.rel, tg.line if tg else 0, L, c.id,
                       "the internal gateway's target group does not health-check the load balancer over HTTPS")]
    return []


def _check_health_checks_admitted(reg: _Region, c) -> list[Broken]:
    """The health checkers reach the listener: on AWS a security group of the ALB admits their published ranges
    (the internal gateway's NLB by its own group: the internal-gateway layer); elsewhere as the CDN does (Azure's
    gateway NSG admits the Internet behind CloudFront; Google's front end takes the port)."""
    if reg.cloud != "aws":
        return _check_cdn_to_lb(reg, c)
    if c.source.name != ROUTE53_HEALTH_CHECKS_PEER:
        return []
    L = "cloud-firewall"
    rel, doc = reg.module_doc("load_balancer")
    lb = _resource(doc, "aws_lb")
    groups = re.findall(r"aws_security_group\.([A-Za-z0-9_-]+)\.id", _norm(lb.get("security_groups"))) if lb else []
    ranges = {b.labels[1] for b in (doc.blocks if doc else []) if b.type == "data" and b.labels[0] == "aws_ip_ranges"
              and ROUTE53_HEALTH_CHECK_RANGES in (b.get("services") or [])}
    port = reg.modules["load_balancer"].get("listener_port")
    for g in groups:
        sg = _resource(doc, "aws_security_group", g)
        for ing in (sg.all("ingress") if sg else []):
            m = re.fullmatch(r"data\.aws_ip_ranges\.([A-Za-z0-9_-]+)\.cidr_blocks", _norm(ing.get("cidr_blocks")))
            on_port = _norm(ing.get("from_port")) == "var.listener_port" and port == c.dest_port
            if m and m.group(1) in ranges and on_port:
                return []
    return [Broken(rel or reg.rel, lb.line if lb else 0, L, c.id,
                   f"no security group of the ALB admits the {ROUTE53_HEALTH_CHECK_RANGES} ranges on {c.dest_port}")]


# ---------------------------------------------------------------- the enforcing CNI

def _check_cni(reg: _Region, region: str) -> Result:
    res = Result(CNI_LAYER, f"{region} cluster")
    rel, doc = reg.module_doc("kubernetes")
    if doc is None:
        res.broken.append(Broken(reg.rel, 0, CNI_LAYER, res.connection, "no kubernetes module"))
        return res
    if reg.cloud == "aws":
        addon = next((b for b in doc.blocks if b.type == "resource" and b.labels[0] == "aws_eks_addon"
                      and b.get("addon_name") == "vpc-cni"), None)
        cfg = _norm(addon.get("configuration_values")) if addon else ""
        if not re.search(r'enableNetworkPolicy"?\s*[=:]\s*\\?"true', cfg):
            res.broken.append(Broken(rel, addon.line_of("configuration_values") if addon else 0, CNI_LAYER, res.connection,
                                     "the vpc-cni addon runs without enableNetworkPolicy: no NetworkPolicy is enforced"))
    elif reg.cloud == "gcp":
        gke = _resource(doc, "google_container_cluster")
        np_ = gke.block("network_policy") if gke else None
        if not gke or not (gke.get("datapath_provider") == "ADVANCED_DATAPATH" or (np_ and np_.get("enabled") is True)):
            res.broken.append(Broken(rel, gke.line_of("datapath_provider") if gke else 0, CNI_LAYER, res.connection,
                                     "neither Dataplane V2 nor network_policy enforces NetworkPolicies"))
    elif reg.cloud == "azure":
        aks = _resource(doc, "azurerm_kubernetes_cluster")
        prof = aks.block("network_profile") if aks else None
        if not prof or prof.get("network_policy") not in ("cilium", "azure", "calico"):
            res.broken.append(Broken(rel, prof.line_of("network_policy") if prof else 0, CNI_LAYER, res.connection,
                                     "network_profile.network_policy is not set: no NetworkPolicy is enforced"))
    return res


# ---------------------------------------------------------------- entry point

def check(tree, region, connections):
    reg = _Region(tree, region)
    reg.arriving = tuple(c for c in connections if c.dest.kind == "lb")
    if reg.doc is None:
        for c in connections:
            for layer in LAYERS:  # in a fixed order (a set's varied with the hash seed from run to run)
                if layer in c.layers:
                    yield Result(layer, c.id, [Broken(reg.rel, 0, layer, c.id, "the region has no Terraform root")])
        return
    hosts_state = None
    for c in connections:
        if "cloud-firewall" in c.layers:
            res = Result("cloud-firewall", c.id)
            if c.dest.kind == "hosts":
                if hosts_state is None:
                    hosts_state = _host_rules(reg)
                res.broken = _check_hosts(reg, c, hosts_state)
            elif c.dest.kind == "lb" and c.source.kind == "health-check":
                res.broken = _check_health_checks_admitted(reg, c)
            elif c.dest.kind == "lb":
                res.broken = _check_cdn_to_lb(reg, c)
            elif c.source.kind == "lb":
                res.broken = _check_lb_to_kong(reg, c)
            elif c.dest.kind == "kube-api":
                res.broken = _check_kube_api(reg, c)
            yield res
        if "cdn" in c.layers:
            yield Result("cdn", c.id, _check_cdn(tree, reg, c))
        if "health-check" in c.layers:
            yield Result("health-check", c.id, _check_health_check(tree, reg, c))
    if any(c.dest.kind == "hosts" and "cloud-firewall" in c.layers for c in connections):
        yield Result("cloud-firewall", "", _module_applies_host_rules(reg))
    if any(layer.startswith("networkpolicy") for c in connections for layer in c.layers):
        yield _check_cni(reg, region)
    if any("cdn" in c.layers for c in connections):
        yield _check_client_address(tree, region)
