"""A throwaway certificate authority and server certificate, made by ``openssl``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


class TLSFiles:
    """A throwaway CA and a certificate for 127.0.0.1 it signed, made with ``openssl``:
    for servers that speak TLS only (``BinaryServer(tls=...)``)."""

    def __init__(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is not installed (Debian: openssl)")
        self.directory = tempfile.mkdtemp(prefix="supervisor-tls-")
        d = Path(self.directory)
        self.ca, self.cert, self.key = str(d / "ca.crt"), str(d / "crt"), str(d / "key")
        ca_key, csr, ext = str(d / "ca.key"), str(d / "csr"), d / "ext"
        # the extensions that Python 3.13's strict verification (VERIFY_X509_STRICT) wants
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        ca = [
            *("req", "-x509", "-new", "-key", ca_key, "-days", "2", "-out", self.ca),
            *("-subj", "/CN=supervisor test CA"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            *("-addext", "subjectKeyIdentifier=hash"),
        ]
        sign = [
            *("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key),
            *("-CAcreateserial", "-days", "2", "-out", self.cert, "-extfile", str(ext)),
        ]
        for args in (
            ["genrsa", "-out", ca_key, "2048"],
            ca,
            ["genrsa", "-out", self.key, "2048"],
            ["req", "-new", "-key", self.key, "-subj", "/CN=127.0.0.1", "-out", csr],
            sign,
        ):
            subprocess.run([openssl, *args], check=True, capture_output=True, timeout=10)

    def server_args(self, port: int) -> list[str]:
        """TLS only: no plain-TCP listener at all."""
        return [
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", self.cert, "--tls-key-file", self.key),
            *("--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no"),
        ]

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
