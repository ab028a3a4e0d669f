"""Certificates and keys for a local control plane: one CA, serving certs, client certs, SA keys.

Everything is ECDSA P-256: generating a key takes microseconds (RSA-2048 takes tens of milliseconds per
key), and Go's TLS stack, kube-apiserver's client-cert authenticator and its service-account token signer
all accept it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zen_flow_dev.node.host import NODE_IP

# A year: long enough for a `make dev` cluster left running, and nothing here outlives its workdir anyway.
_VALIDITY = datetime.timedelta(days=365)
# Backdated so a client whose clock is slightly behind ours does not reject a brand-new certificate.
_CLOCK_SKEW = datetime.timedelta(hours=1)

APISERVER_SERVICE_IP = "10.0.0.1"
"""First address of the apiserver's --service-cluster-ip-range (10.0.0.0/24): the `kubernetes` Service IP."""

_APISERVER_HOSTS = (
    "127.0.0.1",
    NODE_IP,  # the node profile's kubelet, kube-proxy and pods reach the apiserver through a relay there
    "localhost",
    APISERVER_SERVICE_IP,
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA on disk (PEM). Anything signed by it is trusted by a cluster that uses it as client/server CA."""

    cert_path: Path
    key_path: Path

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self.key_path}: expected an EC private key, got {type(key).__name__}")
        return cert, key


@dataclass(frozen=True)
class ClusterPKI:
    """Every file the control plane's TLS and authentication need."""

    ca: CertificateAuthority
    apiserver_cert: Path
    apiserver_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_public_key: Path
    service_account_private_key: Path


ADMIN_USER = "zenflow-admin"
ADMIN_GROUPS = ("system:masters",)


def create_cluster_pki(directory: Path) -> ClusterPKI:
    """Write a fresh CA, apiserver serving cert, admin client cert and SA key pair into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = create_ca(directory)
    apiserver_cert, apiserver_key = issue_serving_cert(ca, directory, _APISERVER_HOSTS, name="apiserver")
    admin_cert, admin_key = issue_client_cert(ca, directory, ADMIN_USER, ADMIN_GROUPS, name="admin")
    sa_public, sa_private = create_service_account_keys(directory)
    return ClusterPKI(
        ca=ca,
        apiserver_cert=apiserver_cert,
        apiserver_key=apiserver_key,
        admin_cert=admin_cert,
        admin_key=admin_key,
        service_account_public_key=sa_public,
        service_account_private_key=sa_private,
    )


def create_ca(directory: Path, common_name: str = "zenflow-dev-ca") -> CertificateAuthority:
    """Create a self-signed CA as `<directory>/ca.crt` + `ca.key`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca = CertificateAuthority(cert_path=directory / "ca.crt", key_path=directory / "ca.key")
    _write_pair(ca.cert_path, ca.key_path, cert, key)
    return ca


def issue_serving_cert(
    ca: CertificateAuthority, directory: Path, hosts: Sequence[str], name: str = "serving"
) -> tuple[Path, Path]:
    """Issue a TLS server cert for `hosts` (IP addresses and/or DNS names) signed by `ca`.

    Go clients (kube-apiserver calling a webhook) ignore the CN, so every host goes into the SAN.
    Returns `(cert_path, key_path)` = `<directory>/<name>.crt`, `<name>.key`.
    """
    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    return _issue(
        ca,
        directory,
        name,
        subject,
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(sans),
    )


def issue_client_cert(
    ca: CertificateAuthority,
    directory: Path,
    user: str,
    groups: Sequence[str] = (),
    name: str | None = None,
) -> tuple[Path, Path]:
    """Issue a client cert: kube-apiserver maps CN to the user name and each O to a group.

    Returns `(cert_path, key_path)` = `<directory>/<name or user>.crt`, `.key`.
    """
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return _issue(ca, directory, name or user, x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH, None)


def create_service_account_keys(directory: Path) -> tuple[Path, Path]:
    """Write the service-account token signing key pair: `(sa.pub, sa.key)`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    public_path, private_path = directory / "sa.pub", directory / "sa.key"
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    _write_private(private_path, key)
    return public_path, private_path


def _issue(
    ca: CertificateAuthority,
    directory: Path,
    name: str,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = ca.load()
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _write_pair(cert_path, key_path, cert, key)
    return cert_path, key_path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_pair(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, key)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
