"""Loading TLS material the way the service will, at config time, so a bad file is a config problem.

``check-config``, ``run`` and a reload all load every CA, client certificate/key pair and the
listen certificate here; a file that would make the service fail (garbage PEM, an empty CA, a
certificate and key that do not match, a key with a passphrase) is reported at its line. A
passphrase is never prompted for: OpenSSL's prompt would hang a service with no terminal.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TLSCheck", "no_passphrase"]


class _Encrypted(Exception):
    pass


def no_passphrase() -> bytes:
    """The ``password`` callback for ``load_cert_chain``: refuse instead of prompting."""
    raise _Encrypted


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(1 << 20)
    except OSError:
        return b""


class TLSCheck:
    """Loads TLS files once per distinct combination within one config load."""

    def __init__(self) -> None:
        self._seen: dict[tuple[object, ...], tuple[str, str] | None] = {}

    def client(self, ca: Path | None, cert: Path | None, key: Path | None) -> tuple[str, str] | None:
        """``(key, message)`` naming the tls key at fault, or None when a client context builds."""
        memo = ("client", ca, cert, key)
        if memo not in self._seen:
            self._seen[memo] = self._client(ca, cert, key)
        return self._seen[memo]

    def server(self, cert: Path, key: Path) -> tuple[str, str] | None:
        memo = ("server", cert, key)
        if memo not in self._seen:
            self._seen[memo] = _pair(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert, key)
        return self._seen[memo]

    @staticmethod
    def _client(ca: Path | None, cert: Path | None, key: Path | None) -> tuple[str, str] | None:
        ctx = ssl.create_default_context()
        if ca is not None:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (ssl.SSLError, ValueError) as exc:
                reason = getattr(exc, "reason", None)
                if reason == "NO_CERTIFICATE_OR_CRL_FOUND" or b"-----BEGIN CERTIFICATE-----" not in _head(ca):
                    return "ca", f"{ca} holds no PEM certificate (empty or not PEM)"
                return "ca", f"{ca} holds no PEM certificate that loads ({reason or exc})"
            except OSError as exc:
                return "ca", f"cannot read {ca}: {exc.strerror or exc}"
        if cert is not None:
            return _pair(ctx, cert, key)
        return None


def _pair(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> tuple[str, str] | None:
    key_path = key or cert
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None, password=no_passphrase)
    except _Encrypted:
        return (
            "key",
            f"{key_path} is encrypted with a passphrase, and fleetd never prompts for one: store the key "
            "decrypted, readable only by fleetd's user (openssl pkey -in KEY -out KEY)",
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "key", f"the certificate {cert} and the key {key_path} do not match"
        if b"-----BEGIN CERTIFICATE-----" not in _head(cert):
            return "cert", f"{cert} holds no PEM certificate (empty or not PEM)"
        if b"PRIVATE KEY-----" not in _head(key_path):
            return "key", f"{key_path} holds no PEM private key (empty or not PEM)"
        return "cert", f"cannot load the certificate {cert} with the key {key_path}: {exc}"
    except OSError as exc:
        return "cert", f"cannot read {cert} or {key_path}: {exc.strerror or exc}"
    return None
