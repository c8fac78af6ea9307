"""A few questions asked with the real ``dig`` (BIND 9), parsing what it prints."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.zone.dnsclient import Address
from tests.zone.test_answers import WEB, Z

DIG = shutil.which("dig") or "/usr/bin/dig"
pytestmark = pytest.mark.skipif(not shutil.which("dig"), reason="dig (bind9-dnsutils) missing")
HEADER = re.compile(r"->>HEADER<<- opcode: (\w+), status: (\w+), id: (\d+)")
FLAGS = re.compile(r";; flags:([^;]*);")
EDNS = re.compile(r"; EDNS: version: (\d+), flags:([^;]*); udp: (\d+)")


@dataclass(frozen=True)
class DigOutput:
    text: str
    opcode: str
    status: str
    flags: frozenset[str]
    sections: dict[str, list[str]]
    edns: tuple[int, frozenset[str], int] | None

    def records(self, section: str) -> list[str]:
        """``name ttl class type rdata`` with single spaces, lowercase, sorted."""
        return sorted(" ".join(line.split()).lower() for line in self.sections.get(section, []))


def dig(addr: Address, *args: str) -> DigOutput:
    host, port = addr
    command = [DIG, f"@{host}", "-p", str(port), "+time=2", "+tries=1", "+nocookie", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    text = result.stdout
    header = HEADER.search(text)
    assert header, text + result.stderr
    flags = FLAGS.search(text)
    assert flags, text
    edns = EDNS.search(text)
    return DigOutput(
        text=text,
        opcode=header.group(1),
        status=header.group(2),
        flags=frozenset(flags.group(1).split()),
        sections=_sections(text),
        edns=(int(edns.group(1)), frozenset(edns.group(2).split()), int(edns.group(3)))
        if edns
        else None,
    )


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r";; (\w+) SECTION:", line)
        if match:
            current = match.group(1)
            sections[current] = []
        elif not line.strip():
            current = ""
        elif current and not line.startswith(";"):
            sections[current].append(line)
    return sections


def test_dig_a_norecurse(addr: Address) -> None:
    out = dig(addr, WEB, "A", "+norecurse")
    assert out.status == "NOERROR"
    assert out.flags == {"qr", "aa"}
    assert out.records("ANSWER") == [f"{WEB}. 5 in a 10.96.1.10"]


def test_dig_dual_stack_aaaa(addr: Address) -> None:
    out = dig(addr, WEB, "AAAA")
    assert out.records("ANSWER") == [f"{WEB}. 5 in aaaa fd00:96::10"]
    assert out.edns is not None
    assert out.edns[0] == 0


def test_dig_nxdomain_has_soa(addr: Address) -> None:
    out = dig(addr, f"www.example.com.shop.svc.{Z}", "AAAA")
    assert out.status == "NXDOMAIN"
    assert "aa" in out.flags
    (soa,) = out.records("AUTHORITY")
    assert soa.startswith(f"{Z}. 5 in soa ")
    assert soa.endswith(" 5")


def test_dig_srv_with_additional(addr: Address) -> None:
    out = dig(addr, f"_HTTP._TCP.{WEB}", "SRV")
    assert out.status == "NOERROR"
    (line,) = out.records("ANSWER")
    name, ttl, rdclass, rtype, _priority, _weight, port, target = line.split()
    assert (name, ttl, rdclass, rtype, port, target) == (
        f"_http._tcp.{WEB}.",
        "5",
        "in",
        "srv",
        "80",
        f"{WEB}.",
    )
    assert out.records("ADDITIONAL") == [
        f"{WEB}. 5 in a 10.96.1.10",
        f"{WEB}. 5 in aaaa fd00:96::10",
    ]


def test_dig_reverse_v4_and_v6(addr: Address) -> None:
    v4 = dig(addr, "-x", "10.96.1.10", "+norecurse")
    assert v4.records("ANSWER") == [f"10.1.96.10.in-addr.arpa. 5 in ptr {WEB}."]
    v6 = dig(addr, "-x", "fd00:96::10")
    (line,) = v6.records("ANSWER")
    owner = line.split()[0]
    assert owner.endswith(".ip6.arpa.")
    assert len(owner.removesuffix(".ip6.arpa.").split(".")) == 32
    assert line.endswith(f"ptr {WEB}.")


def test_dig_tcp_full_answer(addr: Address) -> None:
    out = dig(addr, "+tcp", f"many.big.svc.{Z}", "A")
    assert "tc" not in out.flags
    assert len(out.records("ANSWER")) == 60


def test_dig_bufsize_512_truncates(addr: Address) -> None:
    out = dig(addr, "+bufsize=512", "+ignore", f"many.big.svc.{Z}", "A")
    assert "tc" in out.flags
    assert out.status == "NOERROR"


def test_dig_retries_over_tcp_after_truncation(addr: Address) -> None:
    out = dig(addr, "+noedns", f"many.big.svc.{Z}", "A")
    assert "Truncated, retrying in TCP mode" in out.text
    assert len(out.records("ANSWER")) == 60
    assert "(TCP)" in out.text


def test_dig_badvers(addr: Address) -> None:
    out = dig(addr, "+edns=1", "+noednsneg", WEB, "A")
    assert out.status == "BADVERS"
    assert out.edns is not None
    assert out.edns[0] == 0
    assert not out.records("ANSWER")


def test_dig_do_bit(addr: Address) -> None:
    out = dig(addr, "+dnssec", WEB, "A")
    assert out.edns is not None
    assert "do" in out.edns[1]
    assert out.records("ANSWER") == [f"{WEB}. 5 in a 10.96.1.10"]


def test_dig_dns_version(addr: Address) -> None:
    out = dig(addr, f"dns-version.{Z}", "TXT")
    assert out.records("ANSWER") == [f'dns-version.{Z}. 28800 in txt "1.1.0"']


def test_dig_refused_outside_and_chaos(addr: Address) -> None:
    assert dig(addr, "example.com", "A").status == "REFUSED"
    assert dig(addr, "version.bind", "TXT", "CH").status == "REFUSED"
    host, port = addr
    axfr = subprocess.run(
        [DIG, f"@{host}", "-p", str(port), "+time=2", "+tries=1", Z, "AXFR"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert "Transfer failed" in axfr.stdout  # dig's word for a REFUSED transfer
    assert " SOA " not in axfr.stdout


def test_dig_notimp_opcode(addr: Address) -> None:
    out = dig(addr, "+opcode=2", "+noedns", WEB, "A")
    assert out.opcode == "STATUS"
    assert out.status == "NOTIMP"


def test_dig_externalname(addr: Address) -> None:
    out = dig(addr, f"search.ext.svc.{Z}", "MX")
    assert out.records("ANSWER") == [f"search.ext.svc.{Z}. 5 in cname search.example.com."]
