"""Shared building blocks of the spec models: the strict base class and constrained types."""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any

import annotated_types
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.fields import FieldInfo

from compiler.model import prebuilt

SECRET_SCHEMES = ("vault", "aws-sm", "gcp-sm", "azure-kv", "env")
SECRET_REF_PATTERN = r"^(vault|aws-sm|gcp-sm|azure-kv|env):[A-Za-z0-9_./#@:+=-]{1,256}$"


MAX_NUMBER = 1_000_000_000
"""The maximum of a count or size that names no tighter one: every number the spec takes is bounded, so no
value makes generate loop, allocate or overflow where validate said "valid" (int32 in Kubernetes, floats)."""

# Tighter maxima, kept here so that every bound is in one place (model, field) -> maximum. Sizes follow the
# largest machines the clouds sell (896 vCPUs, 32 TiB memory, 64 TiB disks); shard arithmetic stays small.
MAXIMA = {
    ("Sharding", "franchises_per_shard"): 1_000_000,
    ("Sharding", "expected_franchises"): 10_000_000,
    ("Sharding", "capacity_franchises"): 10_000_000,
    ("NodePool", "vcpus"): 896, ("NodePool", "memory_gib"): 32_768, ("NodePool", "disk_gib"): 65_536,
    ("MachineSize", "vcpus"): 896, ("MachineSize", "memory_gib"): 32_768, ("MachineSize", "disk_gib"): 65_536,
    ("Redis", "maxmemory_mb"): 33_554_432,
    ("Kubernetes", "min_nodes"): 15_000, ("Kubernetes", "max_nodes"): 15_000,
    ("ReplicaRange", "min"): 10_000, ("ReplicaRange", "max"): 10_000,
    ("Gateway", "replicas"): 10_000,
    ("CapacityTargets", "peak_multiplier"): 100,
    ("Postgres", "max_replication_lag_seconds"): 86_400,
}


MAX_ITEMS = 1_000
"""The most entries of a list or a map that names no tighter maximum: every collection the spec takes is bounded
too, so no count makes generate loop or allocate without end (the spec file itself is at most 4 MiB, L014)."""

# Tighter maxima of lists and maps, (model, field) -> most entries. Chosen above what a platform needs and below
# what the clouds and tools accept: regions and zones as the clouds offer them, node pools as AKS/EKS allow per
# cluster, firewall sources as one security group rule set holds.
ITEM_MAXIMA = {
    ("Platform", "clouds"): 3, ("Platform", "geos"): 20, ("Platform", "regions"): 200,
    ("Organization", "compliance"): 5,
    ("Geo", "data_residency"): 50,
    ("Region", "zones"): 6,
    ("RegionSettings", "tiers"): 50, ("RegionSettings", "services"): 500,
    ("Network", "admin_cidrs"): 50, ("Kubernetes", "api_allowed_cidrs"): 50,
    ("Kubernetes", "node_pools"): 100,
    ("NodePool", "instance_types"): 3, ("MachineSize", "instance_types"): 3,
    ("NodePool", "taints"): 50,
    ("Gateway", "cors_origins"): 100,
    ("Monitoring", "apm"): 2, ("Monitoring", "apm_api_keys"): 2, ("Monitoring", "resources"): 10,
    ("WafSettings", "blocked_countries"): 250,
    ("CostModel", "monthly"): 7, ("CostModel", "alert_thresholds_percent"): 10, ("CostModel", "prices"): 1_000,
    ("CostModel", "reference_estimate"): 7,
    ("Postgres", "extensions"): 6,
    ("Redis", "save_rules"): 16,
    ("Elasticsearch", "clients"): 2,
    ("ScalingRules", "policies"): 10,
    ("Service", "depends_on"): 500, ("Service", "uses"): 4, ("Service", "routes"): 100,
    ("Service", "egress"): 100, ("Service", "secrets"): 200, ("Service", "env"): 500,
    ("Service", "writable_paths"): 50,
    ("Route", "paths"): 100, ("Route", "methods"): 7, ("Route", "hosts"): 100,
}


def _unwrap(annotation) -> tuple[Any, list]:
    """The core type under Optional/Annotated, and the constraints met on the way."""
    meta: list = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            base, *extra = typing.get_args(annotation)
            for m in extra:
                meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
            annotation = base
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, meta
            annotation = args[0]
        else:
            return annotation, meta


def _most_items(meta: list):
    """The tightest maximum length among the constraints (None when there is none)."""
    bounds = [m.max_length for m in meta if isinstance(m, annotated_types.MaxLen)]
    return min(bounds) if bounds else None


def _upper(meta: list):
    """The tightest upper bound among the constraints (None when there is none)."""
    bounds = [m.le for m in meta if isinstance(m, annotated_types.Le)] + [m.lt for m in meta if isinstance(m, annotated_types.Lt)]
    return min(bounds) if bounds else None


_ANNOTATION_CODE: dict = prebuilt.annotation_codes()  # the last run's, when kept (compiler/model/__init__.py keeps them)


def _compiled(text: str):
    """The code of an annotation's text, compiled once per process."""
    code = _ANNOTATION_CODE.get(text)
    if code is None:
        code = _ANNOTATION_CODE[text] = compile(text, "<annotation>", "eval")
    return code


class Model(BaseModel):
    """Strict base: unknown keys are errors, no type coercion, instances are immutable, finite floats only, and
    every number has a maximum (stated in its description: MAXIMA, else the field's own, else MAX_NUMBER)."""

    # defer_build: when prebuilt validators are kept (prebuilt.AVAILABLE), pydantic need not build any.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=False, allow_inf_nan=False,
                              defer_build=prebuilt.AVAILABLE)

    def __init_subclass__(cls, **kwargs):
        """Bound every number before pydantic collects the fields (no model rebuild, so no start-up cost): each
        int/float field's FieldInfo gets MAXIMA's bound, else keeps its own, else MAX_NUMBER, and the bound is
        appended to its description. Annotations are strings here (`from __future__ import annotations`); they are
        read in the model module's namespace, and ones that are not resolvable yet are models, never numbers.
        Each one read is handed back to pydantic as the object it names, so pydantic does not evaluate the same text
        again (it resolves an object as it resolves the text's value: same fields, schema and errors); the texts'
        code is compiled once per process (the same few dozen types recur across the 54 models)."""
        super().__init_subclass__(**kwargs)
        import sys
        namespace = dict(vars(sys.modules[cls.__module__]))  # a copy per class: eval may add __builtins__
        annotations = cls.__dict__.get("__annotations__", {})
        for name, text in annotations.items():
            field = cls.__dict__.get(name)
            if not isinstance(field, FieldInfo):
                continue
            try:
                annotation = eval(_compiled(text), namespace) if isinstance(text, str) else text  # noqa: S307 - our own source
            except Exception:
                continue
            annotations[name] = annotation
            core, meta = _unwrap(annotation)
            if typing.get_origin(core) in (list, dict):
                _bound_items(cls, name, annotation, field, meta)
                continue
            if core not in (int, float):
                continue
            wanted = MAXIMA.get((cls.__name__, name))
            bound = _upper(meta + list(field.metadata))
            if bound is None or (wanted is not None and wanted < bound):
                bound = wanted if wanted is not None else MAX_NUMBER
                # outermost, so it wins over a looser bound inside the type (PositiveInt's)
                cls.__annotations__[name] = Annotated[annotation, annotated_types.Le(bound)]
            note = f"Maximum: {bound:,}."
            if field.description and note not in field.description:
                field.description = f"{field.description} {note}"
                field._attributes_set["description"] = field.description  # what pydantic copies when it merges


def _bound_items(cls, name: str, annotation, field: FieldInfo, meta: list) -> None:
    """A list or map field gets ITEM_MAXIMA's bound, else keeps its own, else MAX_ITEMS (outermost, as numbers),
    and the bound is appended to its description."""
    wanted = ITEM_MAXIMA.get((cls.__name__, name))
    bound = _most_items(meta + list(field.metadata))
    if bound is None or (wanted is not None and wanted < bound):
        bound = wanted if wanted is not None else MAX_ITEMS
        cls.__annotations__[name] = Annotated[annotation, annotated_types.MaxLen(bound)]
    note = f"At most {bound:,} {'entries' if typing.get_origin(_unwrap(annotation)[0]) is dict else 'items'}."
    if field.description and note not in field.description:
        field.description = f"{field.description} {note}"
        field._attributes_set["description"] = field.description


def F(default: Any = ..., description: str = "", **kw) -> Any:
    """A described field: every field of the spec carries its documentation."""
    if not description:
        raise ValueError("every spec field needs a description")
    return Field(default, description=description, **kw)


def FD(factory, description: str, **kw) -> Any:
    """A described field whose default is made by `factory`. pydantic reads each factory's signature when it builds
    the model (does it take the validated data?): a model class's signature is built from all its fields and a
    builtin's (dict, list) parsed from its text signature, so a class is handed over wrapped in a plain function,
    whose signature is read at once (~25 M instructions less over the 51 such fields at start-up). Same default;
    a factory is never part of the JSON Schema."""
    if isinstance(factory, type):
        cls = factory
        factory = lambda: cls()  # noqa: E731
    return Field(default_factory=factory, description=description, **kw)


Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")]
"""Lower-case DNS label: safe as a directory, a Kubernetes name, a Terraform label and a tag."""

Percent = Annotated[float, Field(ge=0, le=100)]
PositiveInt = Annotated[int, Field(gt=0, le=MAX_NUMBER)]
Port = Annotated[int, Field(ge=1, le=65535)]

_CPU = re.compile(r"^([0-9]+)(m?)$")
_MEM = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti)$")
_MEM_FACTOR = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}

MAX_CPU_MILLICORES = 1024 * 1000  # 1,024 cores
MAX_MEMORY_MIB = 64 * 1024 * 1024  # 64 TiB


def _cpu_number(v: Any) -> Any:
    """`cpu: 1` is a Kubernetes quantity too: a whole number of cores is taken as its text."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _cpu_bounded(v: str) -> str:
    if cpu_millicores(v) > MAX_CPU_MILLICORES:
        raise ValueError(f"{v} is more than 1024 cores; write at most `1024` (or `1024000m`)")
    return v


def _memory_bounded(v: str) -> str:
    if memory_mib(v) > MAX_MEMORY_MIB:
        raise ValueError(f"{v} is more than 64Ti; write at most `64Ti`")
    return v


# The pattern is the str schema's own (before the BeforeValidator wraps it): pydantic then checks it natively, not
# with a closure of its own, which would keep the prebuilt validators (compiler/model/prebuilt.py) from pickling.
CpuQuantity = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}m?$"), BeforeValidator(_cpu_number),
                        AfterValidator(_cpu_bounded),
                        WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^[0-9]{1,9}m?$"},
                                                  {"type": "integer", "minimum": 0, "maximum": 1024}]})]
"""Kubernetes CPU quantity: `500m`, `2` or the number 2 (cores); at most 1,024 cores."""
MemoryQuantity = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,12}(Ki|Mi|Gi|Ti)$"), AfterValidator(_memory_bounded)]
"""Kubernetes memory quantity with a binary suffix: `512Mi`, `4Gi`; at most 64Ti."""


def cpu_millicores(q: str) -> int:
    n, milli = _CPU.match(q).groups()
    return int(n) if milli else int(n) * 1000


def memory_mib(q: str) -> float:
    n, unit = _MEM.match(q).groups()
    return int(n) * _MEM_FACTOR[unit]


SecretRef = Annotated[str, StringConstraints(pattern=SECRET_REF_PATTERN)]
"""A reference to a secret held elsewhere (`vault:path#key`, `aws-sm:name`, `gcp-sm:name`,
`azure-kv:vault/name`, `env:VAR`); plaintext values are refused."""

def _real_network(v: str) -> str:
    import ipaddress
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError as exc:
        raise ValueError(f"not an IPv4 network: {exc}") from None
    network = ipaddress.ip_network(v, strict=False)
    if str(network) != v:  # 10.0.0.1/16: host bits set; the network is 10.0.0.0/16
        raise ValueError(f"{v} has host bits set: write the network address {network}")
    return v


Cidr = Annotated[str, StringConstraints(pattern=r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$"),
                 AfterValidator(_real_network)]
Duration = Annotated[str, StringConstraints(pattern=r"^[0-9]+(ms|s|m|h|d)$")]

Text = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f`*_#<>\[\]|\\~]{1,200}$")]
r"""Free text the docs show (names, places, descriptions): one line, at most 200 characters, none of Markdown's
markup characters (`` ` * _ # < > [ ] | \ ~ ``), so a value cannot turn into a heading, a link or HTML."""

InstanceType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
"""A cloud machine type (`m6i.xlarge`, `n2-highmem-4`, `Standard_E4s_v5`): letters, digits, `.`, `_`, `-`."""
