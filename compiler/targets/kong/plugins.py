"""Kong plugin and credential entities for the kong target (decK data, Kong 3.9 OSS, DB-less).

Every config key here is checked by tests/targets/test_kong.py against Kong 3.9.3's plugin
schemas; comments say why a value is what it is when the spec does not dictate it.
"""

from __future__ import annotations

import re

from compiler.errors import PlatformcError
from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.gateway import gateway_capacity
from compiler.ir.names import KONG_JWT_PARSER_MODULE

CORRELATION_HEADER = "X-Request-ID"  # the header Envoy/Istio already propagate: one id from edge to pod
CORS_MAX_AGE_SECONDS = 3600  # browsers cache a preflight answer for an hour
# Kong's cors plugin compares an origin made only of these characters literally; anything else
# it treats as an (anchored) regular expression. Spec origins must be literal: no regex surprises.
LITERAL_ORIGIN = re.compile(r"^[A-Za-z0-9.:/-]+$")
# Headers a browser may send cross-origin to the API (besides CORS-safelisted ones).
CORS_BASE_HEADERS = ("Accept", "Authorization", "Content-Type", CORRELATION_HEADER)
CORS_EXPOSED_HEADERS = (CORRELATION_HEADER, "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After")
CORS_METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS")

JWT_CONSUMER = "jwt-issuer"
JWT_ALGORITHM = "RS256"  # the spec holds the issuer's RSA public key
# decK's state-file template variable that carries the issuer's public key at sync time (see secret_inputs).
JWT_KEY_VARIABLE = "DECK_JWT_PUBLIC_KEY"
# Column of the block-scalar content holding the key (consumers[].jwt_secrets[].rsa_public_key):
# decK's `indent` re-indents every line of a multi-line PEM to it. kong.py asserts it after dumping.
JWT_KEY_INDENT = 6
# decK's file schema requires `secret` on jwt_secrets; Kong's jwt plugin only reads it for HS*
# credentials and rejects tokens whose `alg` differs from the credential's, so for RS256 it is inert.
JWT_UNUSED_SECRET = "unused-rs256-verifies-with-rsa-public-key"



class KongEmitError(PlatformcError):
    """A spec value the Kong target cannot express without changing its meaning (exit 2)."""


def tags(region: RegionPlan, owner: str) -> list[str]:
    """`platformc`, the region and the owning service (a Kong set: no duplicates)."""
    return list(dict.fromkeys(["platformc", region.name, owner]))


def rate_limits(plan: PlatformPlan, region: RegionPlan) -> tuple[int, int]:
    """(per second, per minute) for each Kong pod's fixed-window rate-limiting plugin.

    The spec is a token bucket: `requests_per_second` sustained, `burst` at most at once. Kong OSS
    has fixed windows only, so: a client may reach `burst` within one second, and over a minute
    no more than the sustained rate x 60. Kong requires minute >= second, hence the max().

    DB-less Kong counts per pod (`policy: local`), and the load balancer spreads a client's requests
    over all the gateway's pods, so each pod gets the region's figure divided by the HPA's floor,
    rounded down (at least 1): together the pods never admit more than the spec. Kong OSS's `redis`
    policy speaks to one Redis node and the region's Redis is a Redis Cluster (keys on other shards
    answer MOVED), so a shared counter is not available.
    """
    g = region.settings.gateway
    # the HPA's floor: at normal load no client gets more than the spec; at the peak, with more pods, a client
    # spread over all of them may get up to max/min times it (the gateway is sized for that peak)
    n = max(1, kong_replicas(plan, region)[0])
    second = max(1, g.burst // n)
    return second, max(max(g.requests_per_second * 60, g.burst) // n, second)


def kong_replicas(plan: PlatformPlan, region: RegionPlan) -> tuple[int, int]:
    """The gateway HPA's (min, max), from the spec's capacity (compiler/ir/gateway.py)."""
    gc = gateway_capacity(region, plan.spec.capacity.requests_per_second, plan.spec.capacity.peak_multiplier)
    return gc.min_replicas, gc.max_replicas


# The module the canary snippet requires: Kong's own JWT parser. Serverless functions run sandboxed
# (untrusted_lua = sandbox) and may require only what `untrusted_lua_sandbox_requires` lists; the helm target
# sets that Kong setting to this.
JWT_PARSER_MODULE = KONG_JWT_PARSER_MODULE


def canary_headers(region: RegionPlan) -> list[tuple[str, str, str]]:
    """(header, claim, value) of every canary's header match: the header the mesh routes beta testers by."""
    out = set()
    for s in region.services:
        hm = getattr(s.rollout, "header_match", None)
        if hm is not None:
            out.add((hm.name, hm.claim or hm.name, hm.exact))
    return sorted(out)


_LUA_PLAIN = re.compile(r"[A-Za-z0-9._-]+")  # compiled once: every quoted string of every region's functions


def _lua_string(value: str) -> str:
    # header names, claims and values are [A-Za-z0-9._-] (the spec's patterns): nothing to escape
    if not _LUA_PLAIN.fullmatch(value):
        raise KongEmitError(f"{value!r} cannot be written into the canary header function")
    return f'"{value}"'


def canary_header_function(region: RegionPlan) -> str:
    """Lua for a post-function in the access phase (after the jwt plugin): the canary header never comes from
    the client (cleared on every request), and on a request the jwt plugin authenticated it is set when the
    verified token's claim is true or equal to the header's value."""
    lines = ["-- platformc: canary headers come from the verified token, never from the client",
             "for _, h in ipairs({" + ", ".join(_lua_string(h) for h, _, _ in canary_headers(region)) + "}) do",
             "  kong.service.request.clear_header(h)",
             "end",
             "local token = kong.ctx.shared.authenticated_jwt_token",
             "if not token then return end",
             f'local jwt = require("{JWT_PARSER_MODULE}"):new(token)',
             "if not jwt or type(jwt.claims) ~= \"table\" then return end"]
    for header, claim, value in canary_headers(region):
        lines += [f"do local v = jwt.claims[{_lua_string(claim)}]",
                  f"  if v == true or v == {_lua_string(value)} then kong.service.request.set_header({_lua_string(header)}, "
                  f"{_lua_string(value)}) end",
                  "end"]
    return "\n".join(lines) + "\n"


def global_plugins(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """Plugins on every route of the region (decK top-level `plugins`), by name."""
    g = region.settings.gateway
    t = tags(region, "gateway")
    per_second, per_minute = rate_limits(plan, region)
    plugins = [
        {"name": "correlation-id", "config": {
            "header_name": CORRELATION_HEADER, "generator": "uuid", "echo_downstream": True}},
        {"name": "prometheus", "config": {
            "status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True,
            "upstream_health_metrics": True, "per_consumer": False}},
        {"name": "rate-limiting", "config": {
            "second": per_second,
            "minute": per_minute,
            # Per client address. Not `consumer`: every JWT of the issuer maps to one Kong consumer,
            # which would make the limit global. Needs Kong's trusted_ips/real_ip_header behind the LB.
            "limit_by": "ip",
            # DB-less: counters per Kong pod (no `cluster` policy without a database), so the figures
            # are the region's divided by the replicas (rate_limits).
            "policy": "local",
            "fault_tolerant": True,
            "hide_client_headers": False,
            "error_code": 429}},
        {"name": "request-size-limiting", "config": {
            "allowed_payload_size": g.request_size_limit_mb, "size_unit": "megabytes",
            "require_content_length": False}},
    ]
    # No bot-detection: Kong's built-in list (uap-core's bots and "downloaders", kong/plugins/bot-detection/rules.lua)
    # names the HTTP clients of the platform's own callers: okhttp (Android apps), axios, Go-http-client,
    # Apache-HttpClient, Python-urllib, the AWS SDKs, and link previews (WhatsApp, Slackbot, facebookexternalhit).
    # With the empty allow list every such request got 403, webhooks included; an allow list would have to name
    # every client of every caller. Abusive clients are the edge WAF's (managed rules, IP reputation) and the rate
    # limits'.
    if canary_headers(region):
        plugins.append({"name": "post-function", "config": {"access": [canary_header_function(region)]}})
    if g.cors_origins:
        # Never emitted without origins: Kong's cors plugin with no origins answers `*`.
        plugins.append({"name": "cors", "config": cors_config(region)})
    for p in plugins:
        p["tags"] = t
    return sorted(plugins, key=lambda p: p["name"])


def cors_config(region: RegionPlan) -> dict:
    g = region.settings.gateway
    for origin in g.cors_origins:
        if origin != "*" and not LITERAL_ORIGIN.match(origin):
            raise KongEmitError(
                f"settings.gateway.cors_origins: {origin!r} (region {region.name}) is not a literal origin "
                f"(letters, digits and `.:/-` only); Kong would read it as a regular expression")
    # not the canary headers: Kong sets those from the token (a browser's copy is dropped anyway)
    headers = list(dict.fromkeys([*CORS_BASE_HEADERS, g.hash_on_header]))
    used = {m for s in region.services for r in s.routes for m in r.methods} | {"OPTIONS"}
    return {
        "origins": list(g.cors_origins),
        "methods": [m for m in CORS_METHODS if m in used],
        "headers": headers,
        "exposed_headers": list(CORS_EXPOSED_HEADERS),
        "credentials": False,  # bearer tokens, no cookies: the API never needs credentialed CORS
        "max_age": CORS_MAX_AGE_SECONDS,
        "preflight_continue": False,  # Kong answers preflights itself; upstreams never see them
    }


def auth_plugin(region: RegionPlan, service: str, auth: str) -> list[dict]:
    """The route's authentication plugin (none for `auth: none`).

    `jwt` and `oauth2` both validate the issuer's RS256 bearer tokens with Kong's jwt plugin. Kong's
    own oauth2 plugin makes Kong the authorization server and stores tokens in its database, which a
    DB-less gateway does not have; OAuth2 access tokens from the platform's issuer are JWTs.
    """
    if auth == "none":
        return []
    # Kong's defaults do the rest: the token's `iss` names the credential, Authorization header only.
    return [{"name": "jwt", "config": {
        "claims_to_verify": ["exp"],  # Kong verifies no claim unless told; expired tokens must fail
        "uri_param_names": [],  # default `jwt`; no tokens in URLs: they end up in access logs
    }, "tags": tags(region, service)}]


def jwt_consumer(region: RegionPlan) -> dict:
    """The consumer holding the issuer's public key; the key itself comes from a decK variable."""
    g = region.settings.gateway
    if "${{" in g.jwt_issuer:
        raise KongEmitError(f"settings.gateway.jwt_issuer: {g.jwt_issuer!r} (region {region.name}) contains "
                            f"`${{{{`, which decK would run as a template")
    t = tags(region, "gateway")
    return {
        "username": JWT_CONSUMER,
        "tags": t,
        "jwt_secrets": [{
            "key": g.jwt_issuer,  # Kong matches the token's `iss` claim against it
            "algorithm": JWT_ALGORITHM,
            "rsa_public_key": f'${{{{ env "{JWT_KEY_VARIABLE}" | indent {JWT_KEY_INDENT} }}}}\n',
            "secret": JWT_UNUSED_SECRET,
            "tags": t,
        }],
    }


def secret_inputs(region: RegionPlan) -> list[tuple[str, str]]:
    """(decK variable, spec reference) pairs the deploy step must export before `deck gateway sync`.

    Kong 3.9 cannot take a `{vault://...}` reference here: `jwt_secrets.rsa_public_key` is not a
    referenceable field (Kong parses it as a PEM when the file is loaded), and Kong OSS bundles only
    the `env` vault anyway. So the key stays a reference until sync time, through decK's template.
    """
    return [(JWT_KEY_VARIABLE, region.settings.gateway.jwt_public_key)]
