"""Self-signed TLS certificates (kept in ``DATA_DIR/tls/``) and the TLS contexts of the testnet.

Storage nodes serve their storage port over HTTPS and the seed its JSON-RPC over HTTPS, both with
a self-signed certificate; node→node and node→seed clients do not verify certificates (as Session
clients do not verify service nodes' certificates).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .files import write_atomic

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def ensure_certificate(tls_dir: Path, ip: str, common_name: str) -> tuple[Path, Path]:
    """Return (cert, key) paths, creating a self-signed EC P-256 certificate for ``ip`` on first
    use (and whenever one of the two files is missing)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    cert_pem, key_pem = self_signed_certificate(ip, common_name)
    write_atomic(key_path, key_pem, mode=0o600)
    write_atomic(cert_path, cert_pem)
    return cert_path, key_path


def self_signed_certificate(ip: str, common_name: str) -> tuple[bytes, bytes]:
    """(certificate, private key) in PEM: a self-signed EC P-256 certificate for ``ip``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def warm_up() -> None:
    """Initialise the certificate machinery (the OpenSSL of ``cryptography``: ~5 MiB) once: the
    node launcher calls it before it forks, so its nodes share that memory instead of each
    initialising its own when it makes its certificate."""
    self_signed_certificate("127.0.0.1", "warm-up")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server context with the node's certificate. Clients are not asked for certificates, so no
    CA store is loaded (``create_default_context`` would load the system's, ~1 MiB a context)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def server_context_for(tls_dir: Path, ip: str, common_name: str) -> ssl.SSLContext:
    """:func:`ensure_certificate` + :func:`server_context`."""
    return server_context(*ensure_certificate(tls_dir, ip, common_name))


def insecure_client_context() -> ssl.SSLContext:
    """Client context for node→node and node→seed HTTPS: self-signed peers, no verification, so
    no CA store either (the system's would cost ~1 MiB a context and verify nothing here)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
