"""pg_hba.conf tokens.

The file is split into lines; `#` outside double quotes starts a comment; fields are separated
by blanks, list items by commas. A double-quoted token keeps blanks, commas and `#` and loses any
special meaning (`"all"` is a database named all, `"+admins"` is not a group). A double quote
itself cannot be written inside a token (quotes only toggle), nor can a line break: such names
are refused. Keywords and auth methods come from fixed lists; addresses must be a CIDR or a
host name, since they cannot be quoted into something else.
"""

from __future__ import annotations

import ipaddress
import re

from functools import lru_cache

from compiler.formats.conf import CONTROL, refuse

FORMAT = "pg_hba.conf"
CONNECTION_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
NAME_KEYWORDS = {"all", "sameuser", "samerole", "samegroup", "replication"}
ADDRESS_KEYWORDS = {"all", "samehost", "samenet"}
METHODS = {"trust", "reject", "scram-sha-256", "md5", "password", "gss", "sspi", "ident", "peer", "pam",
           "ldap", "radius", "cert"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def name(v: str) -> str:
    """A database or role name, always double-quoted so it means exactly that name."""
    if not isinstance(v, str) or not v:
        refuse(FORMAT, v, "a name must be non-empty text")
    if '"' in v or CONTROL.search(v):
        refuse(FORMAT, v, "a double quote or control character cannot be written inside a pg_hba.conf token")
    return f'"{v}"'


def keyword(v: str) -> str:
    """A bare keyword: a connection type, `all`/`replication`/..., or an auth method."""
    if v not in CONNECTION_TYPES | NAME_KEYWORDS | ADDRESS_KEYWORDS | METHODS:
        refuse(FORMAT, v, "not a pg_hba.conf keyword")
    return v


def names(values) -> str:
    """A database or user field: a keyword given as a string (`"all"`, `"replication"`), or a list of
    names, each double-quoted, so a name that happens to be `all` still means that name."""
    if isinstance(values, str):
        if values not in NAME_KEYWORDS:
            refuse(FORMAT, values, "a single string here is a keyword (all, replication, ...); pass names as a list")
        return values
    if not values:
        refuse(FORMAT, values, "an empty list of names")
    return ",".join(name(v) for v in values)


@lru_cache(maxsize=4096)  # the same subnets and hosts recur in every region's file
def address(v: str) -> str:
    """A CIDR (normalised, e.g. 10.0.0.0/19) or a host name (matched by reverse and forward DNS)."""
    try:
        return str(ipaddress.ip_network(v, strict=True))
    except (ValueError, TypeError):
        pass
    if isinstance(v, str) and _HOSTNAME.fullmatch(v) and v not in ADDRESS_KEYWORDS and "." in v:
        return v
    refuse(FORMAT, v, "an address is a CIDR or a fully qualified host name")


FILTERS = {"hba_name": name, "hba_names": names, "hba_keyword": keyword, "hba_address": address}
