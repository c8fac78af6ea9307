"""The config file's JSON Schema (kubedns.config_schema): generated from kubedns/config.py,
committed into the chart's values.schema.json, and in agreement with ``config.load()``."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kubedns import config, config_schema
from tests.config_cases import BAD, CROSS_FIELD, GOOD, Bad
from tests.test_check_config import kubedns

ROOT = Path(__file__).resolve().parent.parent
VALUES_SCHEMA = ROOT / "charts" / "kubedns" / "values.schema.json"


def test_the_chart_schema_is_the_generated_one() -> None:
    committed = json.loads(VALUES_SCHEMA.read_text())["properties"]["config"]
    assert committed == config_schema.chart_schema(), (
        "charts/kubedns/values.schema.json's properties.config is not what kubedns/config.py "
        "generates: run `make schema` and commit the result"
    )


def test_the_command_prints_a_draft_07_schema_the_defaults_meet() -> None:
    done = kubedns("config-schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = {
        name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop
    }
    jsonschema.validate(defaults, schema)
    assert defaults["listen"] == "127.0.0.1:5353"
    assert schema["properties"]["cache"]["properties"]["servfail_ttl"]["maximum"] == 5
    assert schema["properties"]["pods"]["enum"] == ["disabled", "insecure", "verified"]
    assert schema["properties"]["ops"]["properties"]["listen"]["type"] == ["string", "null"]


def test_every_setting_is_in_the_schema_with_a_description() -> None:
    schema = config_schema.config_schema()
    missing = []

    def walk(cls: type[Any], node: dict[str, Any], prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            prop = node["properties"][item.name]
            if not prop.get("description"):
                missing.append(prefix + item.name)
            if dataclasses.is_dataclass(hints[item.name]) and hints[item.name] is not (
                config.HostPort
            ):
                walk(hints[item.name], prop, f"{prefix}{item.name}.")

    walk(config.Config, schema, "")
    assert missing == [], f"give these settings a docstring in kubedns/config.py: {missing}"


def test_update_rewrites_the_config_part_and_keeps_the_rest(tmp_path: Path) -> None:
    values = json.loads(VALUES_SCHEMA.read_text())
    values["properties"]["config"] = {"type": "object"}  # stale
    values["properties"]["replicaCount"]["maximum"] = 99  # another engineer's edit
    path = tmp_path / "values.schema.json"
    path.write_text(json.dumps(values, indent=2) + "\n")
    done = kubedns("config-schema", "--update", str(path))
    assert done.returncode == 0, done.stderr
    assert "updated" in done.stdout
    updated = json.loads(path.read_text())
    assert updated["properties"]["config"] == config_schema.chart_schema()
    del updated["properties"]["config"], values["properties"]["config"]
    assert updated == values
    assert "up to date" in kubedns("config-schema", "--update", str(path)).stdout


def test_update_of_a_file_that_is_not_a_values_schema_says_so(tmp_path: Path) -> None:
    path = tmp_path / "values.schema.json"
    path.write_text("{not json")
    done = kubedns("config-schema", "--update", str(path))
    assert done.returncode == 2
    assert f"cannot update {path}" in done.stderr


def test_the_chart_refuses_the_keys_it_sets_itself() -> None:
    schema = config_schema.chart_schema()
    validator = jsonschema.Draft7Validator(schema)
    for dotted in config_schema.CHART_OWNED:
        *parents, last = dotted.split(".")
        value: dict[str, Any] = {last: "0.0.0.0:53"}
        for name in reversed(parents):
            value = {name: value}
        errors = list(validator.iter_errors(value))
        assert [list(e.absolute_path) for e in errors] == [dotted.split(".")], dotted
    assert validator.is_valid({"dns_service": ""})
    assert not jsonschema.Draft7Validator(config_schema.config_schema()).is_valid(
        {"dns_service": ""}
    )


def load_verdict(raw: dict[str, Any], tmp_path: Path) -> str | None:
    """None when ``load()`` accepts the file, else its message."""
    path = tmp_path / "kubedns.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    try:
        config.load(path)
    except config.ConfigError as exc:
        return str(exc)
    return None


def schema_errors(raw: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(config_schema.config_schema())
    return ["/".join(map(str, e.absolute_path)) for e in validator.iter_errors(raw)]


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_both_refuse_bad_values_naming_the_key(case: Bad, tmp_path: Path) -> None:
    message = load_verdict(case.config, tmp_path)
    assert message is not None and case.key in message, message
    assert schema_errors(case.config) == [case.pointer]


@pytest.mark.parametrize("raw", GOOD.values(), ids=GOOD.keys())
def test_both_accept_good_values(raw: dict[str, Any], tmp_path: Path) -> None:
    assert load_verdict(raw, tmp_path) is None
    assert schema_errors(raw) == []


@pytest.mark.parametrize(("raw", "key"), CROSS_FIELD.values(), ids=CROSS_FIELD.keys())
def test_cross_field_checks_are_loads_alone(raw: dict[str, Any], key: str, tmp_path: Path) -> None:
    message = load_verdict(raw, tmp_path)
    assert message is not None and key in message, message
    assert schema_errors(raw) == []


# Addresses in the many forms people and fuzzers write them: the schema's patterns must take
# exactly what parse_host_port() and ipaddress take.
H16 = st.text("0123456789abcdefABCDEF", min_size=1, max_size=5)
OCTET = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(256, 999).map(str),
    st.from_regex(r"0[0-9]{1,2}", fullmatch=True),
)
IPV4 = st.one_of(
    st.lists(OCTET, min_size=4, max_size=4).map(".".join),
    st.lists(OCTET, min_size=3, max_size=5).map(".".join),
)


@st.composite
def ipv6(draw: st.DrawFn) -> str:
    groups = draw(st.lists(H16, max_size=9))
    if draw(st.booleans()) and groups:
        groups[-1] = draw(IPV4)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(groups)))
        text = ":".join(groups[:cut]) + "::" + ":".join(groups[cut:])
    else:
        text = ":".join(groups)
    scope = draw(st.sampled_from(["", "", "", "%eth0", "%", "%a/b", "%1%2"]))
    return text + scope


HOST = st.one_of(IPV4, ipv6(), ipv6().map(lambda h: f"[{h}]"), st.text("0123456789.:[]ab "))
EDGE_PORTS = [":0", ":00", ":1", ":053", ":65535", ":065535", ":65536", ":99999", ":", ""]
PORT = st.one_of(
    st.sampled_from(EDGE_PORTS),
    st.integers(0, 70000).map(lambda n: f":{n}"),
    st.from_regex(r":[0-9]{0,7}", fullmatch=True),
    st.text(":0a9 \n"),
)


def accepts(pattern: str, text: str) -> bool:
    """As Go's RE2 reads a JSON Schema pattern: ``$`` is the end of the text (Python's ``$``
    also matches before a final newline, hence fullmatch of the unanchored expression)."""
    assert pattern.startswith("^(?:") and pattern.endswith(")$")
    return re.fullmatch(pattern[1:-1], text) is not None


@given(host=HOST, port=PORT, min_port=st.sampled_from([0, 1]))
@example(host="127.0.0.1", port=":0", min_port=0)
@example(host="127.0.0.1", port=":00", min_port=1)
@example(host="[::1]", port=":65536", min_port=0)
@example(host="[1.2.3.4]", port=":053", min_port=1)
@example(host="1.2.3.4", port=":53\n", min_port=1)
@example(host="::1", port=":53", min_port=0)
def test_address_pattern_takes_what_the_parser_takes(host: str, port: str, min_port: int) -> None:
    text = host + port
    try:
        parsed: config.HostPort | None = config.parse_host_port(text)
    except ValueError:
        parsed = None
    expected = parsed is not None and parsed.port >= min_port
    assert accepts(config.Address(min_port).schema()["pattern"], text) == expected


@given(text=st.one_of(IPV4, ipv6()))
def test_ip_pattern_takes_what_ipaddress_takes(text: str) -> None:
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    (ip_rule,) = config.split_rules(config.IPAddress)[1]
    assert accepts(ip_rule.schema()["pattern"], text) == expected
