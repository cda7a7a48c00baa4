"""PAdES signatures of the PDF documents, verifiable outside RadTrust with any PDF tool.

1. ``institution_credentials``: the key and certificate of the institution a dossier was signed
   for, as files under ``RADTRUST_SIGNING_DIR`` (``<code>.key.pem``, ``<code>.cert.pem``, an
   optional ``<code>.chain.pem`` with the issuing certificates). A real certificate is used by
   putting its files there. When they are missing and ``RADTRUST_SIGNING_LOCAL_CA`` is on, a local
   CA (made on first use, in the same folder) issues them. Keys are written readable by the owner
   only, encrypted with ``RADTRUST_SIGNING_KEY_PASSPHRASE`` when it is set; never stored in the
   database.
2. ``pdf_seal``: a PAdES baseline signature (``ETSI.CAdES.detached``, SHA-256) added to the PDF as
   an incremental update, so the bytes rendered from the snapshot stay the file's unchanged
   prefix. The signature dictionary names the officer who signed the dossier (``/Name``), the
   meaning of their signature (``/Reason``) and the institution (``/Location``). With
   ``RADTRUST_SIGNING_TSA_URL`` an RFC 3161 time stamp from that authority is embedded; without
   one the signing time is the server's clock.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

KEY_BITS = 3072
CA_YEARS, INSTITUTION_YEARS = 20, 15  # documents are kept ten years or more (RADTRUST_DOCUMENT_RETENTION_YEARS)
FIELD_NAME = "RadTrustSignature"
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning (RFC 9336)


@dataclass(frozen=True)
class Seal:
    """Who the PDF is signed for and what the officer's signature meant."""

    institution_code: str
    institution_name: str
    country: str
    signer_name: str
    meaning: str


@dataclass(frozen=True)
class Credentials:
    key: Path
    cert: Path
    chain: tuple[Path, ...]


def _passphrase() -> bytes | None:
    return settings.RADTRUST_SIGNING_KEY_PASSPHRASE.encode() or None


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only, before a byte is written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _key_bytes(key: rsa.RSAPrivateKey) -> bytes:
    passphrase = _passphrase()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=_passphrase())
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"The signing key {path.name} in RADTRUST_SIGNING_DIR cannot be read with the configured RADTRUST_SIGNING_KEY_PASSPHRASE."
        ) from None


def _name(common_name: str, organisation: str, country: str = "") -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]), x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64])]
    if len(country) == 2:
        parts.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    return x509.Name(parts)


def _issue(subject: x509.Name, public_key, issuer: x509.Name, issuer_key, *, years: int, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One issuer at a time (a worker and a web process may render at once)."""
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _local_ca(folder: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """The local CA's certificate and key, made on first use."""
    key_path, cert_path = folder / "ca.key.pem", folder / "ca.cert.pem"
    if not cert_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        name = _name("RadTrust local document-signing CA", "RadTrust")
        _write_private(key_path, _key_bytes(key))
        cert_path.write_bytes(_issue(name, key.public_key(), name, key, years=CA_YEARS, ca=True).public_bytes(serialization.Encoding.PEM))
    return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_key(key_path)


def institution_credentials(*, code: str, name: str, country: str) -> Credentials:
    """The institution's key and certificate files (step 1); issued by the local CA when missing and allowed."""
    folder = Path(settings.RADTRUST_SIGNING_DIR)
    key_path, cert_path, chain_path = folder / f"{code}.key.pem", folder / f"{code}.cert.pem", folder / f"{code}.chain.pem"
    if not (key_path.exists() and cert_path.exists()):
        if not settings.RADTRUST_SIGNING_LOCAL_CA:
            raise ImproperlyConfigured(
                f"No signing certificate for institution {code}: put its key and certificate in RADTRUST_SIGNING_DIR as "
                f"{key_path.name} and {cert_path.name} (with {chain_path.name} for the issuing certificates), or turn RADTRUST_SIGNING_LOCAL_CA on."
            )
        folder.mkdir(parents=True, exist_ok=True)
        with _folder_lock(folder):
            if not cert_path.exists():
                ca_cert, ca_key = _local_ca(folder)
                key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
                subject = _name(f"{name} document signing", name, country)
                cert = _issue(subject, key.public_key(), ca_cert.subject, ca_key, years=INSTITUTION_YEARS, ca=False)
                _write_private(key_path, _key_bytes(key))
                chain_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
                cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Credentials(key=key_path, cert=cert_path, chain=(chain_path,) if chain_path.exists() else ())


def pdf_seal(data: bytes, seal: Seal) -> bytes:
    """``data`` with a PAdES signature of the institution appended (step 2)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # heavy; only signing needs it
    from pyhanko.sign import fields, signers, timestamps

    credentials = institution_credentials(code=seal.institution_code, name=seal.institution_name, country=seal.country)
    signer = signers.SimpleSigner.load(
        str(credentials.key), str(credentials.cert), ca_chain_files=[str(p) for p in credentials.chain], key_passphrase=_passphrase()
    )
    if signer is None:
        raise ImproperlyConfigured(f"The signing key or certificate of institution {seal.institution_code} in RADTRUST_SIGNING_DIR cannot be read.")
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        name=seal.signer_name,
        reason=seal.meaning,
        location=seal.institution_name,
    )
    timestamper = timestamps.HTTPTimeStamper(settings.RADTRUST_SIGNING_TSA_URL) if settings.RADTRUST_SIGNING_TSA_URL else None
    out = signers.PdfSigner(meta, signer, timestamper=timestamper).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)))
    return out.getvalue()
