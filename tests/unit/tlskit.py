"""Real PEM material for config tests (openssl, generated once per test process).

The loader loads every TLS file as the service will, so placeholders no longer pass: tests that
need valid files copy these, tests of bad files write their own garbage next to them.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pem", "pem"]


@dataclass(frozen=True, slots=True)
class Pem:
    ca: bytes  # a self-signed certificate, usable as a CA bundle
    cert: bytes  # the certificate of ``key``
    key: bytes
    other_key: bytes  # does not match ``cert``
    encrypted_key: bytes  # ``key`` under the passphrase "secret"

    def write(self, folder: Path, names: tuple[str, str, str] = ("ca.pem", "cert.pem", "key.pem")) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in zip(names, (self.ca, self.cert, self.key), strict=True):
            (folder / name).write_bytes(data)


@functools.cache
def pem() -> Pem:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

        for name in ("key.pem", "other.pem"):
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)
        openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            "key.pem",
            "-days",
            "7",
            "-subj",
            "/CN=fleetd test",
            "-out",
            "cert.pem",
        )
        openssl("pkey", "-in", "key.pem", "-aes256", "-passout", "pass:secret", "-out", "enc.pem")
        cert = (d / "cert.pem").read_bytes()
        return Pem(
            ca=cert,
            cert=cert,
            key=(d / "key.pem").read_bytes(),
            other_key=(d / "other.pem").read_bytes(),
            encrypted_key=(d / "enc.pem").read_bytes(),
        )
