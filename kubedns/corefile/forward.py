"""The ``forward`` directive: upstreams, stub domains and the forwarder's knobs.

``forward . TO...`` in the ``.`` server block gives the default upstreams; ``forward DOMAIN
TO...``, or ``forward . TO...`` in a server block for DOMAIN, gives a stub domain.
"""

from __future__ import annotations

from typing import get_args

from kubedns.config import MAX_UPSTREAMS, ForwardPolicy, HostPort, parse_host_port
from kubedns.corefile import values
from kubedns.corefile.conversion import Block, Conversion, OptionHandler, one
from kubedns.corefile.syntax import Directive
from kubedns.forward.resolvconf import is_self

RESOLV_CONF = "/etc/resolv.conf"

REFUSED = {
    "force_tcp": "kubedns asks upstreams over UDP first (TCP when the answer is truncated)",
    "tls": "kubedns forwards plain DNS only",
    "tls_servername": "kubedns forwards plain DNS only",
    "except": "kubedns forwards every name outside the cluster zone",
    "next": "kubedns has one forwarder per domain; it does not try another on an answer",
    "next_on_nodata": "kubedns has one forwarder per domain",
    "failfast_all_unhealthy_upstreams": "kubedns has no such switch",
    "max_connect_attempts": "kubedns bounds attempts by forward.timeout instead",
    "doh_method": "kubedns forwards plain DNS only",
    "resolver": "kubedns upstreams are IP addresses; nothing to resolve",
}
NOTED = {
    "expire": "nothing to set: kubedns opens a fresh socket for each exchange",
    "max_idle_conns": "nothing to set: kubedns keeps no idle upstream connections",
    "prefer_udp": "nothing to set: kubedns always asks over UDP first and over TCP when the "
    "answer is truncated",
}
_STUB_OPTION = (
    "not converted: in kubedns it applies to all upstreams; set it on the `forward .` of the "
    "`.` server block"
)


def parse_upstreams(args: tuple[str, ...]) -> tuple[list[HostPort], bool]:
    """The TO list of ``forward``: addresses, and whether it names /etc/resolv.conf."""
    found: list[HostPort] = []
    resolv = False
    for text in args:
        if text.startswith("/"):
            if text != RESOLV_CONF:
                raise ValueError(f"{text}: kubedns reads nameservers only from {RESOLV_CONF}")
            resolv = True
            continue
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() != "dns":
            raise ValueError(f"{text}: kubedns forwards plain DNS only (no {scheme}://)")
        try:
            found.append(parse_host_port(rest if sep else text, default_port=53))
        except ValueError:
            raise ValueError(f"{text}: upstreams must be IP addresses or {RESOLV_CONF}") from None
    if resolv and found:
        raise ValueError(f"mixes {RESOLV_CONF} and addresses; kubedns takes one or the other")
    if len(found) > MAX_UPSTREAMS:
        raise ValueError(f"{len(found)} upstreams; at most {MAX_UPSTREAMS}")
    return found, resolv


class Forward:
    """Converts every ``forward``; ``finish`` writes the upstreams once all are known."""

    def __init__(self, out: Conversion) -> None:
        self.out = out
        self.default: tuple[list[HostPort], int] | None = None
        """The default upstreams and the line of their ``forward .``."""
        self.stubs: dict[str, tuple[list[HostPort], int]] = {}

    def directive(self, directive: Directive, block: Block) -> None:
        if len(directive.args) < 2:
            raise ValueError("needs FROM and at least one TO")
        origin = values.zone(directive.args[0])
        upstreams, resolv = parse_upstreams(directive.args[1:])
        # `forward .` covers every zone of its block; in the root block that is everything.
        if origin:
            targets: tuple[str, ...] = (origin,)
        else:
            targets = ("",) if block.is_root else block.zones
        is_default = "" in targets
        for target in targets:
            if target:
                self._stub(target, upstreams, resolv=resolv, line=directive.line)
            else:
                self._default_forward(upstreams, resolv=resolv, line=directive.line)
        if is_default:
            self.out.options(
                directive,
                mapped=self._forward_options(),
                noted=NOTED,
                refused=REFUSED,
                note_at=("forward",),
            )
        else:
            noted = dict.fromkeys(
                ("policy", "max_concurrent", "max_fails", "health_check"), _STUB_OPTION
            )
            self.out.options(
                directive,
                noted=noted | NOTED,
                refused=REFUSED,
                note_at=("forward",),
            )

    def _default_forward(self, upstreams: list[HostPort], *, resolv: bool, line: int) -> None:
        if self.default is not None:
            raise ValueError(f"a second `forward .` (the first is on line {self.default[1]})")
        self.default = (upstreams, line)
        if resolv:
            self.out.set(
                ("forward", "upstreams"),
                [],
                f"forward . {RESOLV_CONF} (line {line}): "
                "empty upstreams make kubedns read the nameservers of /etc/resolv.conf",
            )
        else:
            self.out.set(
                ("forward", "upstreams"), [str(u) for u in upstreams], f"forward (line {line})"
            )

    def _stub(self, zone: str, upstreams: list[HostPort], *, resolv: bool, line: int) -> None:
        if resolv:
            raise ValueError(f"stub domain {zone}: needs upstream IPs, not {RESOLV_CONF}")
        if zone in self.stubs:
            raise ValueError(f"stub domain {zone} already forwarded on line {self.stubs[zone][1]}")
        self.stubs[zone] = (upstreams, line)

    def _forward_options(self) -> dict[str, OptionHandler]:
        def policy(option: Directive) -> None:
            value = one(option)
            if value not in get_args(ForwardPolicy):
                raise ValueError(f"{value!r} is not random, round_robin or sequential")
            self.out.set(("forward", "policy"), value)

        def limit(key: str) -> OptionHandler:
            def apply(option: Directive) -> None:
                number = values.whole(one(option))
                if number:
                    self.out.set(("forward", key), number)
                else:
                    self.out.note(
                        ("forward",),
                        f"forward {option.name} 0 (line {option.line}): "
                        "CoreDNS's 0 means no limit; kubedns needs at least 1 and "
                        "keeps its default",
                    )

            return apply

        def health_check(option: Directive) -> None:
            if not option.args:
                raise ValueError("needs a duration")
            interval = values.seconds(option.args[0])
            if interval <= 0:
                raise ValueError("the interval must be more than 0")
            self.out.set(("forward", "health_check_interval"), interval)
            if option.args[1:]:
                self.out.note(
                    ("forward", "health_check_interval"),
                    "kubedns probes `. IN NS` "
                    "without recursion (as no_rec); the probe name is not configurable",
                )

        def failover(option: Directive) -> None:
            rcodes = {rcode.upper() for rcode in option.args}
            if not rcodes or not rcodes <= {"SERVFAIL", "REFUSED"}:
                raise ValueError("kubedns moves on only after SERVFAIL, REFUSED or no answer")
            self.out.note(
                ("forward",),
                f"forward failover (line {option.line}): nothing to "
                "set, kubedns always tries the next upstream after SERVFAIL or REFUSED",
            )

        return {
            "policy": policy,
            "max_concurrent": limit("max_concurrent"),
            "max_fails": limit("max_fails"),
            "health_check": health_check,
            "failover": failover,
        }

    def finish(self, *, listen: HostPort, cluster: str | None) -> None:
        if self.default is None:
            self.out.set(
                ("forward", "enabled"),
                False,
                "no `forward .` in a `.` server block: CoreDNS answered only its own zones",
            )
            if self.stubs:
                self.out.refuse(
                    None,
                    "forward",
                    "stub domains without a `forward .`: kubedns "
                    "cannot forward some domains and refuse the rest",
                )
        elif not self._check_self(*self.default, listen):
            # Printed, it would make the config fail at start; the problem names it instead.
            del self.out.settings["forward", "upstreams"]
        for zone, (upstreams, line) in self.stubs.items():
            if cluster is not None and values.is_within(zone, cluster):
                self.out.refuse(
                    line,
                    "forward",
                    f"stub domain {zone} is inside the cluster "
                    f"zone {cluster}: kubedns never forwards its names",
                )
            elif self._check_self(upstreams, line, listen):
                self.out.set(
                    ("forward", "stub_domains", zone),
                    [str(u) for u in upstreams],
                    f"forward for {zone} (line {line})",
                )

    def _check_self(self, upstreams: list[HostPort], line: int, listen: HostPort) -> bool:
        for upstream in upstreams:
            if is_self(upstream, [listen]):
                self.out.refuse(line, "forward", f"{upstream} is kubedns's own listen address")
                return False
        return True
