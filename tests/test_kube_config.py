"""How ``api_client_from`` finds the API server: in a pod, or through a kubeconfig."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubedns.sources.kube import KubeConfigError, api_client_from
from tests.fakeapi import FakeApiServer

IN_POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("first-token\n")
    (directory / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    return directory


def bearer(client: object) -> str:
    configuration = client.configuration  # type: ignore[attr-defined]
    return str(configuration.get_api_key_with_prefix("BearerToken"))


def test_in_cluster_uses_the_service_account(service_account: Path) -> None:
    client = api_client_from(None, environ=IN_POD, service_account_dir=service_account)
    assert client.configuration.host == "https://10.96.0.1:443"
    assert client.configuration.ssl_ca_cert == str(service_account / "ca.crt")
    assert bearer(client) == "Bearer first-token"
    assert client.configuration.retries is False  # our watch loop owns retries


def test_in_cluster_token_is_re_read_when_it_rotates(service_account: Path) -> None:
    client = api_client_from(None, environ=IN_POD, service_account_dir=service_account)
    assert bearer(client) == "Bearer first-token"
    # The kubelet swaps in a new file; mtime and inode change.
    rotated = service_account / "token.new"
    rotated.write_text("second-token")
    os.replace(rotated, service_account / "token")
    assert bearer(client) == "Bearer second-token"


def test_in_cluster_without_a_token_is_a_clear_error(service_account: Path) -> None:
    (service_account / "token").unlink()
    with pytest.raises(KubeConfigError, match="in-cluster API config"):
        api_client_from(None, environ=IN_POD, service_account_dir=service_account)


def test_kubeconfig_wins_over_in_cluster(
    fake: FakeApiServer, tmp_path: Path, service_account: Path
) -> None:
    path = fake.write_kubeconfig(tmp_path / "config")
    client = api_client_from(path, environ=IN_POD, service_account_dir=service_account)
    assert client.configuration.host == fake.url
    assert bearer(client) == f"Bearer {fake.token}"


def test_kubeconfig_from_the_environment(fake: FakeApiServer, tmp_path: Path) -> None:
    path = fake.write_kubeconfig(tmp_path / "config")
    client = api_client_from(None, environ={"KUBECONFIG": str(path)})
    assert client.configuration.host == fake.url


def test_nothing_usable_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(KubeConfigError, match=f"not in a pod.*kubeconfig {missing}"):
        api_client_from(missing, environ={})
    with pytest.raises(KubeConfigError, match="nope"):
        api_client_from(None, environ={"KUBECONFIG": str(missing)})
