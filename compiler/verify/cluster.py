"""Verify checker: the cluster layers, read from kubernetes/<region>/, kong/<region>/ and helm/<region>/ alone.

Per connection:
- `service` (every connection to a Service the tree defines: Kong's and service -> service): the DNS name
  <name>.<namespace>.svc.cluster.local is a Service in the tree, the port dialled is one of its ports, and
  its targetPort (by name or number) is a containerPort of every Deployment whose pods the selector picks
  (at least one), equal to the port the connection says the pods listen on;
- `kong`: decK's upstream target for that Service is exactly address:port;
- `networkpolicy-egress` / `networkpolicy-ingress`: with Kubernetes' semantics (a pod selected by no
  policy of a direction is open in that direction; once selected, a connection passes only when some
  selecting policy has a rule whose peer matches the other end and whose ports hold dest_port/protocol; a named
  port holds it when every Deployment of the destination pods declares that name with that number).
  Pod peers match by namespaceSelector (kubernetes.io/metadata.name and the tree's Namespace labels) and
  podSelector against the labels the connection states; every other peer by an ipBlock holding all its
  CIDRs (outside any `except`);
- `istio`: a ServiceEntry visible to the source namespace names the host, the port, resolution DNS;
- `prometheus`: a scrape job of the kube-prometheus-stack values lists every host of the group at the
  exporter's port (for a DR standby cluster's probe, a /probe job whose target is the connection's address).

Object-level (connection "" and a subject): every Secret, ConfigMap and ServiceAccount a pod template
names (env valueFrom, envFrom, volumes, serviceAccountName) and every Secret a Helm values file names
(existingSecret-like keys, alertmanagerSpec.secrets) is an object in kubernetes/<region>/ or the target
of an ExternalSecret there; HPAs scale a Deployment of the tree; PDB selectors and DestinationRule
subsets pick some Deployment's pods; VirtualService destinations name a Service and a declared subset; a pod that
reaches the self-managed Elasticsearch has a user the elasticsearch role creates, its password and the CA
(compiler/verify/search_credentials.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import field
from functools import lru_cache

import yaml

from compiler.ir.dr_watch import PROBE_PATH
from compiler.ir.postgres_ha import standby_of
from compiler.records import dataclass
from compiler.verify import CONNECTIONS_DIR, Broken, Result

LAYERS = ("service", "kong", "networkpolicy-egress", "networkpolicy-ingress", "istio", "prometheus", "objects")

NS_LABEL = "kubernetes.io/metadata.name"
CLUSTER_SUFFIX = ".svc.cluster.local"
# Namespaces whose Services the cluster itself provides (never in the tree).
CLUSTER_NAMESPACES = {"kube-system"}
SECRET_KEYS = ("existingSecret", "existingSecretName", "secretName")


@dataclass
class Obj:
    file: str
    doc: dict  # parsed once per distinct document text: `__line__` counts from the document's start
    offset: int = 0  # lines of the file before the document

    def at(self, mapping) -> int:
        """The file line of a mapping of this object (the object's own line when there is none)."""
        if isinstance(mapping, dict) and "__line__" in mapping:
            return self.offset + mapping["__line__"]
        return self.line

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "")

    @property
    def name(self) -> str:
        return (self.doc.get("metadata") or {}).get("name", "")

    @property
    def namespace(self) -> str:
        return (self.doc.get("metadata") or {}).get("namespace", "")

    @property
    def line(self) -> int:
        return self.offset + self.doc.get("__line__", 1)

    @property
    def spec(self) -> dict:
        return self.doc.get("spec") or {}


@dataclass
class Cluster:
    """The region's objects, indexed once."""

    objects: list[Obj] = field(default_factory=list)
    by_kind: dict = field(default_factory=dict)  # kind -> {(ns, name): Obj}
    policies: dict = field(default_factory=dict)  # ns -> [Obj]
    ns_labels: dict = field(default_factory=dict)  # ns -> labels
    external_targets: set = field(default_factory=set)  # (ns, secret name) an ExternalSecret creates
    # (ns, secret name) -> the keys its ExternalSecret fills (None: dataFrom, any key)
    external_keys: dict = field(default_factory=dict)
    helm_namespaces: dict = field(default_factory=dict)  # release -> namespace

    def get(self, kind: str, ns: str, name: str) -> Obj | None:
        return self.by_kind.get(kind, {}).get((ns, name))

    def of(self, kind: str) -> list[Obj]:
        return list(self.by_kind.get(kind, {}).values())

    def deployments_in(self, ns: str) -> list[Obj]:
        return [d for (n, _), d in self.by_kind.get("Deployment", {}).items() if n == ns]


def _labels(d) -> dict:
    return {k: v for k, v in (d or {}).items() if k != "__line__"}


def _pod_labels(dep: Obj) -> dict:
    return _labels(((dep.spec.get("template") or {}).get("metadata") or {}).get("labels"))


def _load(tree, region: str) -> Cluster:
    c = Cluster()
    for rel in tree.glob(f"kubernetes/{region}/**/*.yaml"):
        for offset, doc in tree.documents(rel):
            if isinstance(doc, dict) and doc.get("kind"):
                c.objects.append(Obj(rel, doc, offset))
    for o in c.objects:
        c.by_kind.setdefault(o.kind, {})[(o.namespace, o.name)] = o
        if o.kind == "NetworkPolicy":
            c.policies.setdefault(o.namespace, []).append(o)
        elif o.kind == "Namespace":
            c.ns_labels[o.name] = _labels((o.doc.get("metadata") or {}).get("labels"))
        elif o.kind == "ExternalSecret":
            target = (o.spec.get("target") or {}).get("name") or o.name
            c.external_targets.add((o.namespace, target))
            _add_keys(c, (o.namespace, target), o.spec)
    for doc in tree.yaml_docs(f"helm/{region}/helmfile.yaml"):
        for r in doc.get("releases") or []:
            c.helm_namespaces[r.get("name", "")] = r.get("namespace", "")
            chart = str(r.get("chart", ""))
            if chart.startswith("./charts/"):  # a local chart of plain manifests: its objects are the tree's too
                for rel in tree.glob(f"helm/{region}/charts/{chart[len('./charts/'):]}/templates/*.yaml"):
                    try:
                        docs = tree.documents(rel)
                    except yaml.YAMLError:
                        continue  # a real template: not readable as manifests
                    for offset, d in docs:
                        if isinstance(d, dict) and d.get("kind"):
                            obj = Obj(rel, d, offset)
                            c.objects.append(obj)
                            c.by_kind.setdefault(obj.kind, {})[(obj.namespace or r.get("namespace", ""), obj.name)] = obj
                            if obj.kind == "ExternalSecret":
                                target = (obj.namespace or r.get("namespace", ""),
                                          (obj.spec.get("target") or {}).get("name") or obj.name)
                                c.external_targets.add(target)
                                _add_keys(c, target, obj.spec)
    for release, ns in c.helm_namespaces.items():  # ExternalSecrets a release renders from its values
        for doc in tree.yaml_docs(f"helm/{region}/{release}.values.yaml"):
            for es in _external_secrets(doc):
                meta = es.get("metadata") or {}
                target = (meta.get("namespace") or ns,
                          ((es.get("spec") or {}).get("target") or {}).get("name") or meta.get("name", ""))
                c.external_targets.add(target)
                _add_keys(c, target, es.get("spec") or {})
    return c


def _add_keys(c: Cluster, target: tuple, spec: dict):
    """The keys an ExternalSecret writes into its Secret: data[].secretKey and the target template's data keys;
    with dataFrom the keys are the store's, unknown here (None: any key)."""
    if spec.get("dataFrom"):
        c.external_keys[target] = None
        return
    keys = {d.get("secretKey") for d in spec.get("data") or [] if isinstance(d, dict)}
    keys |= set((((spec.get("target") or {}).get("template") or {}).get("data") or {}).keys())
    if target in c.external_keys and c.external_keys[target] is not None:
        c.external_keys[target] |= keys
    elif target not in c.external_keys:
        c.external_keys[target] = keys


def _object_keys(cl: Cluster, kind: str, ns: str, name: str):
    """The keys a Secret or ConfigMap of the tree (or an ExternalSecret's target) holds; None when unknown."""
    obj = cl.get(kind, ns, name)
    if obj is not None:
        data = {k for k in (obj.doc.get("data") or {}) if k != "__line__"}
        return data | {k for k in (obj.doc.get("stringData") or {}) if k != "__line__"}
    if kind == "Secret":
        return cl.external_keys.get((ns, name))
    return None


def _external_secrets(node):
    if isinstance(node, dict):
        if node.get("kind") == "ExternalSecret" and isinstance(node.get("spec"), dict):
            yield node
            return
        for v in node.values():
            yield from _external_secrets(v)
    elif isinstance(node, list):
        for v in node:
            yield from _external_secrets(v)


# ---------------------------------------------------------------- selectors and peers

def _selector_matches(sel, labels: dict) -> bool:
    """A LabelSelector against a label set ({} selects everything)."""
    if sel is None:
        return False
    for k, v in _labels(sel.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _cidrs_inside(cidrs, block: dict) -> bool:
    """Whether every range of `cidrs` lies inside the ipBlock (its cidr, clear of its excepts). Answered once per
    distinct strings: the policies repeat the same blocks, the connections the same ranges (the reference tree asks
    2,272 times, 227 distinct questions, and each answer built its networks anew)."""
    cidr, excepts = block.get("cidr", ""), block.get("except") or []
    if type(cidr) is str and type(excepts) is list and all(type(x) is str for x in (*excepts, *cidrs)):
        return _strings_inside(tuple(cidrs), cidr, tuple(excepts))
    return _ranges_inside(cidrs, cidr, excepts)


def _ranges_inside(cidrs, cidr, excepts) -> bool:
    try:
        outer = ipaddress.ip_network(cidr, strict=False)
        excepts = [ipaddress.ip_network(x, strict=False) for x in excepts]
        nets = [ipaddress.ip_network(x, strict=False) for x in cidrs]
    except ValueError:
        return False
    return bool(nets) and all(n.version == outer.version and n.subnet_of(outer)
                              and not any(n.overlaps(e) for e in excepts) for n in nets)


_strings_inside = lru_cache(maxsize=None)(_ranges_inside)


def _peer_matches(rule_peer: dict, peer, policy_ns: str, cl: Cluster) -> bool:
    if "ipBlock" in rule_peer:
        return peer.kind != "pods" and _cidrs_inside(peer.cidrs, rule_peer["ipBlock"] or {})
    if peer.kind != "pods":
        return False
    ns_sel = rule_peer.get("namespaceSelector")
    if ns_sel is None:
        ns_ok = peer.namespace == policy_ns
    else:
        ns_ok = _selector_matches(ns_sel, {**cl.ns_labels.get(peer.namespace, {}), NS_LABEL: peer.namespace})
    pod_sel = rule_peer.get("podSelector")
    return ns_ok and (pod_sel is None or _selector_matches(pod_sel, peer.labels))


def _rule_admits(peers, other, policy_ns: str, cl: Cluster) -> bool:
    """Whether a rule's peers take in the other end: a pod peer by one selector, any other by ipBlocks that
    together hold each of its CIDRs (an absent or empty peer list admits everything)."""
    if not peers:
        return True
    if other.kind == "pods":
        return any(_peer_matches(p, other, policy_ns, cl) for p in peers)
    blocks = [p["ipBlock"] or {} for p in peers if "ipBlock" in p]
    return bool(other.cidrs) and all(any(_cidrs_inside([c], b) for b in blocks) for c in other.cidrs)


def _named_port_resolves(name: str, conn, cl: Cluster) -> bool:
    """Whether a policy's named port is the connection's port on every pod it reaches: Kubernetes resolves the name
    on each destination pod (NetworkPolicyPort.port), so each Deployment of the tree whose pods the destination's
    labels pick must declare a container port of that name, the connection's number and protocol. Pods the tree
    has no Deployment for (the charts'), or none at all: unresolved, not admitted."""
    dest = conn.dest
    if dest.kind != "pods":
        return False
    deps = [d for d in cl.deployments_in(dest.namespace)
            if _selector_matches({"matchLabels": dict(dest.labels)}, _pod_labels(d))]
    if not deps:
        return False
    for d in deps:
        containers = ((d.spec.get("template") or {}).get("spec") or {}).get("containers") or []
        if not any(p.get("name") == name and p.get("containerPort") == conn.dest_port
                   and (p.get("protocol") or "TCP") == conn.protocol
                   for ctr in containers for p in ctr.get("ports") or []):
            return False
    return True


def _port_matches(ports, conn, cl: Cluster) -> bool:
    port, protocol = conn.dest_port, conn.protocol
    if not ports:
        return True
    for p in ports:
        if (p.get("protocol") or "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        number = p["port"]
        if isinstance(number, int) and (number == port or number <= port <= (p.get("endPort") or number)):
            return True
        if isinstance(number, str) and _named_port_resolves(number, conn, cl):
            return True
    return False


def _policy_types(pol: Obj) -> list[str]:
    types = pol.spec.get("policyTypes")
    if types:
        return list(types)
    return ["Ingress", "Egress"] if "egress" in pol.spec else ["Ingress"]


def _check_policy(cl: Cluster, conn, layer: str, conns_file: str) -> list[Broken]:
    egress = layer == "networkpolicy-egress"
    pods, other = (conn.source, conn.dest) if egress else (conn.dest, conn.source)
    direction, rules_key, peer_key = ("Egress", "egress", "to") if egress else ("Ingress", "ingress", "from")
    selecting = [p for p in cl.policies.get(pods.namespace, [])
                 if direction in _policy_types(p) and _selector_matches(p.spec.get("podSelector"), pods.labels)]
    if not selecting:
        return []  # not isolated in this direction: Kubernetes lets everything through
    near = None  # (file, line, message) of the rule that comes closest
    for pol in selecting:
        for rule in pol.spec.get(rules_key) or []:
            peer_ok = _rule_admits(rule.get(peer_key), other, pol.namespace, cl)
            if peer_ok and _port_matches(rule.get("ports"), conn, cl):
                return []
            if peer_ok and near is None:
                near = (pol.file, pol.at(rule),
                        f"NetworkPolicy {pol.namespace}/{pol.name} admits {other.name} but not port "
                        f"{conn.dest_port}/{conn.protocol}")
    if near is None:
        pol = next((p for p in selecting if p.spec.get(rules_key)), selecting[0])
        where = f"{other.namespace}/{other.name} pods" if other.kind == "pods" else ", ".join(other.cidrs) or other.name
        near = (pol.file, pol.at(pol.spec),
                f"no {rules_key} rule of the policies selecting {pods.name}'s pods in {pods.namespace} "
                f"(default deny) allows {where} on {conn.dest_port}/{conn.protocol}")
    return [Broken(near[0], near[1], layer, conn.id, near[2])]


# ---------------------------------------------------------------- Service resolution

def _split_address(address: str) -> tuple[str, str] | None:
    if not address.endswith(CLUSTER_SUFFIX):
        return None
    parts = address[: -len(CLUSTER_SUFFIX)].split(".")
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _resolves_in_tree(conn, cl: Cluster) -> bool:
    """Connections whose Service the tree must define: Kong's and service -> service (a Service in a
    namespace of the tree's own; Helm releases' and the cluster's Services are the charts')."""
    if "kong" in conn.layers:
        return True
    split = _split_address(conn.address)
    if conn.dest.kind != "pods" or conn.source.kind != "pods" or not split:
        return False
    ns = split[1]
    if ns in CLUSTER_NAMESPACES:
        return False
    return ns in cl.ns_labels or ns not in set(cl.helm_namespaces.values())


def _check_service(cl: Cluster, conn, conns_file: str) -> list[Broken]:
    split = _split_address(conn.address)
    if not split:
        return [Broken(conns_file, conn.line, "service", conn.id, f"{conn.address} is not a Service DNS name "
                       f"(<name>.<namespace>{CLUSTER_SUFFIX})")]
    name, ns = split
    svc = cl.get("Service", ns, name)
    if svc is None:
        return [Broken(conns_file, conn.line, "service", conn.id, f"no Service {ns}/{name} in the tree")]
    ports = svc.spec.get("ports") or []
    entry = next((p for p in ports if p.get("port") == conn.port), None)
    if entry is None:
        return [Broken(svc.file, svc.at(ports[0] if ports else svc.spec), "service", conn.id,
                       f"Service {ns}/{name} has no port {conn.port} (ports: "
                       f"{', '.join(str(p.get('port')) for p in ports) or 'none'})")]
    selector = _labels(svc.spec.get("selector"))
    deps = [d for d in cl.deployments_in(ns) if selector and _selector_matches({"matchLabels": selector}, _pod_labels(d))]
    if not deps:
        return [Broken(svc.file, svc.at(svc.spec), "service", conn.id,
                       f"Service {ns}/{name}'s selector {selector} matches the pods of no Deployment in {ns}")]
    target = entry.get("targetPort", entry.get("port"))
    out = []
    for d in deps:
        containers = ((d.spec.get("template") or {}).get("spec") or {}).get("containers") or []
        cports = [p for ctr in containers for p in ctr.get("ports") or []]
        hit = next((p for p in cports if (p.get("name") == target if isinstance(target, str)
                                          else p.get("containerPort") == target)), None)
        if hit is None:
            out.append(Broken(svc.file, svc.at(entry), "service", conn.id,
                              f"targetPort {target!r} of Service {ns}/{name} is no containerPort of Deployment "
                              f"{ns}/{d.name}"))
        elif hit.get("containerPort") != conn.dest_port or (hit.get("protocol") or "TCP") != conn.protocol:
            out.append(Broken(d.file, d.at(hit), "service", conn.id,
                              f"Deployment {ns}/{d.name} listens on {hit.get('containerPort')}/"
                              f"{hit.get('protocol') or 'TCP'}, the connection expects {conn.dest_port}/{conn.protocol}"))
    return out


# ---------------------------------------------------------------- Kong

def _kong_targets(tree, region: str) -> tuple[str, list[dict]]:
    rel = f"kong/{region}/kong.yaml"
    targets = []
    for doc in tree.yaml_docs(rel):
        for up in doc.get("upstreams") or []:
            for t in up.get("targets") or []:
                targets.append(t)
    return rel, targets


def _check_kong(tree, region: str, conn, conns_file: str) -> list[Broken]:
    rel, targets = _kong_targets(tree, region)
    if not tree.exists(rel):
        return [Broken(rel, 0, "kong", conn.id, "no decK file")]
    want = f"{conn.address}:{conn.port}"
    if any(str(t.get("target")) == want for t in targets):
        return []
    same_host = [t for t in targets if str(t.get("target", "")).rsplit(":", 1)[0] == conn.address]
    if same_host:
        t = same_host[0]
        return [Broken(rel, t.get("__line__", 0), "kong", conn.id,
                       f"upstream target {t.get('target')}, the Service port is {conn.port} (want {want})")]
    return [Broken(rel, tree.line_of(rel, "upstreams:"), "kong", conn.id, f"no upstream target {want}")]


# ---------------------------------------------------------------- Istio and Prometheus

def _check_istio(cl: Cluster, conn, conns_file: str) -> list[Broken]:
    entries = [o for o in cl.of("ServiceEntry") if conn.address in (o.spec.get("hosts") or [])]
    visible = [o for o in entries if o.namespace == conn.source.namespace
               or not o.spec.get("exportTo") or "*" in o.spec["exportTo"]
               or conn.source.namespace in o.spec["exportTo"]]
    if not visible:
        where = (entries[0].file, entries[0].line) if entries else (conns_file, conn.line)
        return [Broken(where[0], where[1], "istio", conn.id,
                       f"no ServiceEntry for {conn.address} visible from namespace {conn.source.namespace}")]
    for o in visible:
        ports = o.spec.get("ports") or []
        if any(p.get("number") == conn.port for p in ports) and o.spec.get("resolution") == "DNS":
            return []
    o = visible[0]
    return [Broken(o.file, o.at(o.spec), "istio", conn.id,
                   f"ServiceEntry {o.namespace}/{o.name} lacks port {conn.port} with resolution DNS")]


def _scrape_configs(tree, region: str) -> tuple[str, dict, list]:
    rel = f"helm/{region}/kube-prometheus-stack.values.yaml"
    docs = tree.yaml_docs(rel)
    spec = ((docs[0].get("prometheus") or {}).get("prometheusSpec") or {}) if docs else {}
    return rel, spec, spec.get("additionalScrapeConfigs") or []


def _check_prometheus(tree, region: str, conn, conns_file: str) -> list[Broken]:
    rel, spec, jobs = _scrape_configs(tree, region)
    if standby_of(conn.dest.name):
        # a DR standby cluster the region runs (compiler/ir/dr_watch.py): only a job that asks the exporter's /probe
        # for the connection's address (the standby's DSN) scrapes it; the exporter's own /metrics reads its host's
        # cluster
        jobs = [j for j in jobs if j.get("metrics_path") == PROBE_PATH
                and ((j.get("params") or {}).get("target") or []) == [conn.address]]
    statics = [s for j in jobs for s in j.get("static_configs") or []]
    listed = {str(t) for s in statics for t in s.get("targets") or []}
    missing = [h for h in conn.dest.hosts if f"{h}:{conn.dest_port}" not in listed]
    if not conn.dest.hosts:
        return [Broken(conns_file, conn.line, "prometheus", conn.id, "the connection names no hosts to scrape")]
    if not missing:
        return []
    near = next((s for s in statics for t in s.get("targets") or [] if str(t).rsplit(":", 1)[0] in missing), None)
    line = near.get("__line__", 0) if near else spec.get("__line__", 0)
    return [Broken(rel, line, "prometheus", conn.id, f"no scrape job lists {missing[0]}:{conn.dest_port}"
                   + (f" (and {len(missing) - 1} more hosts)" if len(missing) > 1 else ""))]


# ---------------------------------------------------------------- object references

def _pod_references(pod: dict):
    """(kind, name, mapping) for every Secret / ConfigMap / ServiceAccount a pod spec names."""
    if pod.get("serviceAccountName") and pod["serviceAccountName"] != "default":
        yield "ServiceAccount", pod["serviceAccountName"], pod
    for ctr in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for e in ctr.get("env") or []:
            vf = e.get("valueFrom") or {}
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = vf.get(key)
                if ref and not ref.get("optional"):
                    yield kind, ref.get("name", ""), ref
        for ef in ctr.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                ref = ef.get(key)
                if ref and not ref.get("optional"):
                    yield kind, ref.get("name", ""), ref
    for v in pod.get("volumes") or []:
        if v.get("secret") and not v["secret"].get("optional"):
            yield "Secret", v["secret"].get("secretName", ""), v["secret"]
        if v.get("configMap") and not v["configMap"].get("optional"):
            yield "ConfigMap", v["configMap"].get("name", ""), v["configMap"]
        for src in (v.get("projected") or {}).get("sources") or []:
            for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if src.get(key) and not src[key].get("optional"):
                    yield kind, src[key].get("name", ""), src[key]


def _values_secrets(node, path=()):
    """(name, mapping) for every Secret a Helm values tree names."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "__line__":
                continue
            if k in SECRET_KEYS and isinstance(v, str) and v:
                yield v, node
            elif k in ("secretKeyRef", "secretRef") and isinstance(v, dict) and v.get("name"):
                yield v["name"], v
            elif k == "secrets" and path and path[-1] == "alertmanagerSpec" and isinstance(v, list):
                for s in v:
                    if isinstance(s, str):
                        yield s, node
            else:
                yield from _values_secrets(v, path + (k,))
    elif isinstance(node, list):
        for v in node:
            yield from _values_secrets(v, path)


def _exists(cl: Cluster, kind: str, ns: str, name: str) -> bool:
    return cl.get(kind, ns, name) is not None or (kind == "Secret" and (ns, name) in cl.external_targets)


def _check_objects(tree, region: str, cl: Cluster) -> list[Result]:
    results = []

    def result(layer, subject, broken=None):
        results.append(Result(layer, subject, broken or []))

    for d in cl.of("Deployment"):
        pod = ((d.spec.get("template") or {}).get("spec") or {})
        broken = []
        seen = set()  # one line per missing object (its first reference)
        for kind, name, where in _pod_references(pod):
            if (kind, name) not in seen and not _exists(cl, kind, d.namespace, name):
                seen.add((kind, name))
                broken.append(Broken(d.file, d.at(where), "objects", f"Deployment {d.namespace}/{d.name}",
                                     f"{kind} {d.namespace}/{name} is neither in the tree nor an ExternalSecret's target"))
            elif kind in ("Secret", "ConfigMap") and where.get("key") and kind != "ServiceAccount":
                keys = _object_keys(cl, kind, d.namespace, name)
                if keys is not None and where["key"] not in keys and (kind, name, where["key"]) not in seen:
                    seen.add((kind, name, where["key"]))
                    broken.append(Broken(d.file, d.at(where), "objects", f"Deployment {d.namespace}/{d.name}",
                                         f"key {where['key']} is not in {kind} {d.namespace}/{name} "
                                         f"(it holds {', '.join(sorted(keys)) or 'no key'})"))
        result("objects", f"Deployment {d.namespace}/{d.name}", broken)
    for release, ns in cl.helm_namespaces.items():
        rel = f"helm/{region}/{release}.values.yaml"
        broken = []
        seen = set()
        for doc in tree.yaml_docs(rel):
            for name, where in _values_secrets(doc):
                if name not in seen and not _exists(cl, "Secret", ns, name):
                    seen.add(name)
                    broken.append(Broken(rel, where.get("__line__", 0), "objects", f"release {ns}/{release}",
                                         f"Secret {ns}/{name} is neither in the tree nor an ExternalSecret's target"))
        result("objects", f"release {ns}/{release}", broken)
    for h in cl.of("HorizontalPodAutoscaler"):
        ref = h.spec.get("scaleTargetRef") or {}
        ok = ref.get("kind") == "Deployment" and cl.get("Deployment", h.namespace, ref.get("name", "")) is not None
        result("objects", f"HorizontalPodAutoscaler {h.namespace}/{h.name}", [] if ok else [Broken(
            h.file, h.at(ref), "objects", f"HorizontalPodAutoscaler {h.namespace}/{h.name}",
            f"scaleTargetRef {ref.get('kind')} {h.namespace}/{ref.get('name')} is no Deployment in the tree")])
    for p in cl.of("PodDisruptionBudget"):
        sel = p.spec.get("selector")
        ok = any(_selector_matches(sel, _pod_labels(d)) for d in cl.deployments_in(p.namespace))
        result("objects", f"PodDisruptionBudget {p.namespace}/{p.name}", [] if ok else [Broken(
            p.file, p.at(sel), "objects", f"PodDisruptionBudget {p.namespace}/{p.name}",
            "the selector picks the pods of no Deployment in the namespace")])
    subsets = {}
    for dr in cl.of("DestinationRule"):
        split = _split_address(dr.spec.get("host", ""))
        ns = split[1] if split else dr.namespace
        broken = []
        names = set()
        for s in dr.spec.get("subsets") or []:
            names.add(s.get("name"))
            if not any(_selector_matches({"matchLabels": s.get("labels") or {}}, _pod_labels(d)) for d in cl.deployments_in(ns)):
                broken.append(Broken(dr.file, dr.at(s), "objects", f"DestinationRule {dr.namespace}/{dr.name}",
                                     f"subset {s.get('name')} picks the pods of no Deployment in {ns}"))
        subsets.setdefault(dr.spec.get("host", ""), set()).update(names)
        result("objects", f"DestinationRule {dr.namespace}/{dr.name}", broken)
    for vs in cl.of("VirtualService"):
        broken = []
        for http in vs.spec.get("http") or []:
            for r in http.get("route") or []:
                dest = r.get("destination") or {}
                host, subset = dest.get("host", ""), dest.get("subset")
                split = _split_address(host)
                if split and cl.get("Service", split[1], split[0]) is None:
                    broken.append(Broken(vs.file, vs.at(dest), "objects", f"VirtualService {vs.namespace}/{vs.name}",
                                         f"destination {host} is no Service in the tree"))
                elif subset and subset not in subsets.get(host, set()):
                    broken.append(Broken(vs.file, vs.at(dest), "objects", f"VirtualService {vs.namespace}/{vs.name}",
                                         f"subset {subset} of {host} is declared by no DestinationRule"))
        result("objects", f"VirtualService {vs.namespace}/{vs.name}", broken)
    return results


# ---------------------------------------------------------------- entry point

def check(tree, region, connections):
    cl = _load(tree, region)
    conns_file = f"{CONNECTIONS_DIR}/{region}.json"
    out = []
    for conn in connections:
        if _resolves_in_tree(conn, cl):
            out.append(Result("service", conn.id, _check_service(cl, conn, conns_file)))
        for layer in conn.layers:
            if layer == "kong":
                out.append(Result(layer, conn.id, _check_kong(tree, region, conn, conns_file)))
            elif layer in ("networkpolicy-egress", "networkpolicy-ingress"):
                out.append(Result(layer, conn.id, _check_policy(cl, conn, layer, conns_file)))
            elif layer == "istio":
                out.append(Result(layer, conn.id, _check_istio(cl, conn, conns_file)))
            elif layer == "prometheus":
                out.append(Result(layer, conn.id, _check_prometheus(tree, region, conn, conns_file)))
    out += _check_objects(tree, region, cl)
    from compiler.verify import search_credentials  # pods that use the self-managed Elasticsearch can log in to it
    out += search_credentials.check(tree, region, cl)
    return out

