"""Security findings: plain-TCP hosts and expiring TLS certificates on host objects and in the summary."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from fleetd.config.model import HostSettings, TLSSettings
from fleetd.fleet.findings import FindingsWatch, host_findings, read_cert
from fleetd.fleet.state import FleetState
from tests.unit.opskit import host, settings, start_client


def _cert(directory: Path, name: str, days: int) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-days", str(days),
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    return {"soon": _cert(d, "soon", 10), "later": _cert(d, "later", 400), "ca": _cert(d, "ca", 3650)}


def test_read_cert_takes_the_earliest_expiry_in_a_bundle(
    certs: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    soon = read_cert(certs["soon"][0])
    assert soon.error is None and soon.not_after is not None
    assert 9 * 86400 < soon.not_after - time.time() < 11 * 86400
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(certs["later"][0].read_bytes() + certs["soon"][0].read_bytes())
    assert read_cert(bundle).not_after == soon.not_after
    assert read_cert(tmp_path / "missing.pem").error is not None
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert read_cert(tmp_path / "junk.pem").error == "no PEM certificate in the file"


def test_transport_findings() -> None:
    def codes(url: str, tls: TLSSettings | None = None) -> list[str]:
        return [f.code for f in host_findings(HostSettings(name="h", url=url, tls=tls), {}, time.time())]

    assert codes("tcp://0.0.0.0:2375") == ["insecure_transport"]
    assert codes("http://10.0.0.5:2375") == ["insecure_transport"]
    assert codes("unix:///var/run/docker.sock") == []
    assert codes("https://10.0.0.5:2376") == []
    assert codes("tcp://10.0.0.5:2376", TLSSettings()) == []
    assert codes("tcp://10.0.0.5:2376", TLSSettings(verify=False)) == ["tls_verify_disabled"]


async def test_findings_on_host_objects_and_in_the_summary(
    tmp_path: Path, certs: dict[str, tuple[Path, Path]]
) -> None:
    soon_cert, soon_key = certs["soon"]
    later_cert, later_key = certs["later"]
    ca = certs["ca"][0]
    hosts = [
        host("plain", "tcp://127.0.0.1:9"),
        host("expiring", "tcp://127.0.0.1:9", tls=TLSSettings(ca=ca, cert=soon_cert, key=soon_key)),
        host("fine", "https://127.0.0.1:9", tls=TLSSettings(ca=ca, cert=later_cert, key=later_key)),
        host("local", "unix:///nonexistent/docker.sock"),
    ]
    client = await start_client(settings(tmp_path, hosts), ready=False)
    try:
        data = await (await client.get("/api/v1/hosts")).json()
        by_name = {h["name"]: h for h in data["hosts"]}
        assert by_name["plain"]["insecure_transport"] is True
        assert [f["code"] for f in by_name["plain"]["findings"]] == ["insecure_transport"]
        [expiring] = by_name["expiring"]["findings"]
        assert expiring["code"] == "tls_cert_expiring" and expiring["path"] == str(soon_cert)
        assert expiring["not_after"][:4].isdigit() and "expires on" in expiring["message"]
        assert by_name["expiring"]["insecure_transport"] is False
        assert by_name["fine"]["findings"] == [] and by_name["local"]["findings"] == []
        assert all(not k.startswith("_") for h in data["hosts"] for k in h)
        summary = await (await client.get("/api/v1/summary")).json()
        assert summary["security"] == {
            "insecure_transport": 1,
            "tls_verify_disabled": 0,
            "tls_cert_expiring": 1,
            "hosts_flagged": 2,
        }
    finally:
        await client.close()


async def test_watch_follows_time_and_new_hosts(certs: dict[str, tuple[Path, Path]]) -> None:
    now = [time.time()]
    state = FleetState()
    later_cert, later_key = certs["later"]
    record = state.add(
        HostSettings(name="h", url="https://127.0.0.1:9", tls=TLSSettings(cert=later_cert, key=later_key))
    )
    watch = FindingsWatch(state, clock=lambda: now[0])
    await watch.refresh()
    watch.apply()
    assert record.findings == ()
    now[0] += 380 * 86400  # 20 days before expiry
    await watch.refresh()
    watch.apply()
    assert [f.code for f in record.findings] == ["tls_cert_expiring"]
    now[0] += 30 * 86400
    watch.apply()
    assert "expired on" in record.findings[0].message
    added = state.add(HostSettings(name="new", url="tcp://127.0.0.1:9"))
    watch.apply()
    assert added.insecure_transport is True
