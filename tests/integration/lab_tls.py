"""Certificates for the mutual-TLS daemon: a throw-away CA, a server and a client certificate (openssl)."""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.integration.lab_os import LabError

__all__ = ["TLSPaths", "make_certificates"]


@dataclass(frozen=True, slots=True)
class TLSPaths:
    """Client side of mutual TLS: the CA that signed the daemon's certificate, our cert and key."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> tuple[TLSPaths, TLSPaths]:
    """A CA plus server (SAN IP:127.0.0.1, DNS:localhost) and client certificates: (server, client)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LabError(f"openssl {' '.join(args)}: {done.stderr.strip()}")

    def key(name: str) -> None:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)
        (directory / name).chmod(0o600)

    key("ca-key.pem")
    openssl(
        "req", "-x509", "-new", "-key", "ca-key.pem", "-sha256", "-days", "7", "-subj", "/CN=fleetd test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "ca.pem",
    )  # fmt: skip
    for role, cn, extra in (
        ("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "fleetd-test-client", "extendedKeyUsage=clientAuth\n"),
    ):
        key(f"{role}-key.pem")
        (directory / f"{role}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n" + extra
        )
        openssl("req", "-new", "-key", f"{role}-key.pem", "-subj", f"/CN={cn}", "-out", f"{role}.csr")
        openssl(
            "x509", "-req", "-in", f"{role}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-set_serial", str(random.getrandbits(63)), "-days", "7", "-sha256",
            "-extfile", f"{role}.ext", "-out", f"{role}-cert.pem",
        )  # fmt: skip
    ca = directory / "ca.pem"
    server = TLSPaths(ca, directory / "server-cert.pem", directory / "server-key.pem")
    client = TLSPaths(ca, directory / "client-cert.pem", directory / "client-key.pem")
    return server, client
