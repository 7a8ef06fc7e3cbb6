"""Shared building blocks of the spec models: the strict base class and constrained types."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

SECRET_SCHEMES = ("vault", "aws-sm", "gcp-sm", "azure-kv", "env")
SECRET_REF_PATTERN = r"^(vault|aws-sm|gcp-sm|azure-kv|env):[A-Za-z0-9_./#@:+=-]{1,256}$"


class Model(BaseModel):
    """Strict base: unknown keys are errors, no type coercion, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=False)


def F(default: Any = ..., description: str = "", **kw) -> Any:
    """A described field: every field of the spec carries its documentation."""
    if not description:
        raise ValueError("every spec field needs a description")
    return Field(default, description=description, **kw)


def FD(factory, description: str, **kw) -> Any:
    return Field(default_factory=factory, description=description, **kw)


Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")]
"""Lower-case DNS label: safe as a directory, a Kubernetes name, a Terraform label and a tag."""

Percent = Annotated[float, Field(ge=0, le=100)]
PositiveInt = Annotated[int, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]

_CPU = re.compile(r"^([0-9]+)(m?)$")
_MEM = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti)$")
_MEM_FACTOR = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}

CpuQuantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+m?$")]
"""Kubernetes CPU quantity: `500m` or `2` (cores)."""
MemoryQuantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")]
"""Kubernetes memory quantity with a binary suffix: `512Mi`, `4Gi`."""


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
    return v


Cidr = Annotated[str, StringConstraints(pattern=r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$"),
                 AfterValidator(_real_network)]
Duration = Annotated[str, StringConstraints(pattern=r"^[0-9]+(ms|s|m|h|d)$")]
