"""What a webhook may reach, and how it is signed.

- SSRF guard: a callback URL must be http(s) and every address its host resolves to must be global (not
  loopback, link-local, private, shared, reserved, multicast or unspecified, also not wrapped in IPv4-mapped,
  6to4 or NAT64 form), unless ``WEBHOOK_ALLOW_PRIVATE``.
- Pinning: a delivery resolves the host once (:func:`vet_callback_url`) and connects only to the addresses that
  were checked (:class:`PinnedTransport`), so a name with a short TTL cannot pass the check with a public
  address and then be resolved again, by the HTTP client, to 169.254.169.254 (DNS rebinding). The URL's host
  still goes in the ``Host`` header and in TLS (SNI and the certificate check).
- Signing: ``Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, and its check for receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = [
    "MAX_URL_LENGTH",
    "RESOLVE_TIMEOUT",
    "CallbackResolveError",
    "CallbackURLError",
    "IPAddress",
    "PinnedBackend",
    "PinnedTransport",
    "VettedTarget",
    "address_allowed",
    "check_callback_url",
    "parse_callback_url",
    "resolve",
    "sign",
    "verify",
    "vet_callback_url",
]

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackURLError(ValueError):
    """A callback URL that is malformed, or that resolves to an address webhooks may not reach."""


class CallbackResolveError(CallbackURLError):
    """The callback host did not resolve (perhaps for now: a delivery retries it)."""


# -- the SSRF guard ------------------------------------------------------------------------
def address_allowed(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a global unicast address; False for loopback, link-local, private, shared (100.64/10),
    reserved, multicast, unspecified and documentation ranges, also when IPv4-mapped or 6to4/NAT64-wrapped."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_allowed(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            return address_allowed(ip.sixtofour)
        if ip in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64: the IPv4 address in the low 32 bits
            return address_allowed(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_reserved:
        return False
    return bool(ip.is_global) and not ip.is_private


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal in any spelling the resolver accepts (``127.1``, ``2130706433``, ``0x7f.0.0.1``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def parse_callback_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a well-formed http(s) URL, or CallbackURLError."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise CallbackURLError(f"callback_url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackURLError(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackURLError("callback_url must use http or https")
    host = parts.hostname
    if not host:
        raise CallbackURLError("callback_url has no host")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal: itself, without a lookup), in the resolver's order."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except TimeoutError:
        raise CallbackResolveError(f"callback_url host {host} did not resolve in {RESOLVE_TIMEOUT:g}s") from None
    except (OSError, UnicodeError) as exc:
        raise CallbackResolveError(f"callback_url host {host} cannot be resolved: {exc}") from None
    found: dict[IPAddress, None] = {}  # a dict: duplicates dropped, the resolver's order kept
    for info in infos:
        with contextlib.suppress(ValueError):
            found[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
    if not found:
        raise CallbackResolveError(f"callback_url host {host} resolves to no address")
    return list(found)


@dataclass(frozen=True, slots=True)
class VettedTarget:
    """A callback URL and what one lookup of its host gave: the only addresses an attempt may connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _refuse_unless_allowed(host: str, addresses: Iterable[IPAddress]) -> None:
    for ip in addresses:
        if not address_allowed(ip):
            raise CallbackURLError(
                f"callback_url {host} resolves to {ip}, a loopback, link-local, private or reserved address: "
                "refused (set WEBHOOK_ALLOW_PRIVATE=true to allow it)"
            )


async def vet_callback_url(url: str, *, allow_private: bool) -> VettedTarget:
    """Resolve the URL's host once and check every address (unless ``allow_private``): a delivery attempt
    connects to these addresses and never resolves the name again."""
    _, host, port = parse_callback_url(url)
    addresses = tuple(await resolve(host, port))
    if not allow_private:
        _refuse_unless_allowed(host, addresses)
    return VettedTarget(url=url, host=host, port=port, addresses=addresses)


async def check_callback_url(url: str, *, allow_private: bool) -> str:
    """The URL, when webhooks may POST to it: every address its host resolves to must be global.

    With ``allow_private`` the host is not looked up (a submission is not refused for a name that does not
    resolve yet); a delivery resolves it anyway, to pin the addresses it connects to.
    """
    if allow_private:
        parse_callback_url(url)
        return url
    await vet_callback_url(url, allow_private=False)
    return url


# -- pinning: connect to the vetted addresses only --------------------------------------------
class PinnedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects to the vetted addresses, in order, whatever name it is
    given: httpcore hands it the URL's host name, and resolving that again is what DNS rebinding exploits."""

    def __init__(self, addresses: Sequence[IPAddress], inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        if not addresses:
            raise ValueError("PinnedBackend needs at least one address")
        self.addresses = tuple(addresses)
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        failure: Exception = httpcore.ConnectError("no vetted address")  # replaced: there is at least one
        for ip in self.addresses:  # the next address when one refuses, as a resolving client would
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks connect over TCP to vetted addresses only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport for one vetted URL, its connections made by a :class:`PinnedBackend`.

    The request keeps its URL, so ``Host``, SNI and the certificate check use the name; only the TCP
    connection goes to the checked address. No proxy, no environment, no keep-alive beyond the attempt.
    """

    def __init__(self, target: VettedTarget, *, ssl_context: ssl.SSLContext,
                 backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self.target = target
        # httpx takes no network backend: replace the pool it built with one on ours (and no keep-alive: the
        # client lives for one attempt, and a later attempt resolves and checks the host again).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_keepalive_connections=0,
            network_backend=PinnedBackend(target.addresses, backend),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # The addresses belong to the host urllib parsed: a request whose URL httpx reads as another host
        # (a parser difference, or a redirect should one ever be followed) is refused, not sent there.
        if request.url.host.lower() != self.target.host.lower():
            raise CallbackURLError(f"callback_url host {request.url.host!r} is not the vetted {self.target.host!r}")
        return await super().handle_async_request(request)


# -- signing -------------------------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Webhook-Signature`` header value: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """Check a ``Webhook-Signature`` header, refusing signatures older (or newer) than ``tolerance`` seconds."""
    try:
        items = dict(part.split("=", 1) for part in header.split(","))
        t = int(items["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, items.get("v1", ""))
