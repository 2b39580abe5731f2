"""Where Hangar may connect for an attached compute: never into HANGAR_ATTACH_DENY_NETWORKS
(link-local by default, where cloud metadata services hand out the host's credentials).

The forms refuse a literal address in a denied network before anything is stored. A host
name is resolved by the worker right before each connect, every address it gives is
checked, and the worker connects to the address it checked, so a second lookup cannot swap
it (the forms make no DNS queries: a name may resolve elsewhere by then anyway).
"""

from __future__ import annotations

import ipaddress
import socket

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressDenied(Exception):
    """The host is, or resolves to, an address in a denied network; the message says so."""


def denied_networks() -> list[Network]:
    return [ipaddress.ip_network(str(item)) for item in settings.HANGAR_ATTACH_DENY_NETWORKS]


def denied_by(address: Address) -> Network | None:
    """The denied network holding `address`; an IPv4-mapped IPv6 address counts as IPv4."""
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    for network in denied_networks():
        if any(a.version == network.version and a in network for a in candidates):
            return network
    return None


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def resolve(host: str, port: int = 22) -> list[str]:
    """Every address `host` stands for (a literal address stands for itself), in the order
    the resolver gives them; socket.gaierror if it cannot be resolved."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 scope ("fe80::1%eth0") is dropped for the check: the address is what counts.
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in found))


def check_host(host: str, port: int = 22) -> list[str]:
    """The addresses of `host`, all permitted; AddressDenied if any is not. A name that
    does not resolve raises socket.gaierror (the caller decides what that means)."""
    addresses = resolve(host, port)
    for text in addresses:
        network = denied_by(ipaddress.ip_address(text))
        if network is not None:
            via = "" if text == host.strip("[]") else f" (it resolves to {text})"
            raise AddressDenied(
                f"{host}{via} is in {network}, a network Hangar never connects to "
                "(HANGAR_ATTACH_DENY_NETWORKS): link-local and unspecified addresses reach "
                "the host's own services, such as a cloud's metadata service."
            )
    return addresses
