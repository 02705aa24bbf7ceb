//! The user CA: signs short-lived client certificates for hardlab users (CN = user, one O per role)
//! and the proxy's own serving certificate. The clusters never trust this CA; only the proxy does.
//!
//! rcgen makes the CA and the client's CSR, but it writes a single `O=` per subject (rcgen#81),
//! so the user certificate's TBSCertificate is written here with yasna and signed with ring.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use yasna::models::{ObjectIdentifier, UTCTime};

use super::ProxyError;

const OID_ECDSA_WITH_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const OID_KP_SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
const OID_KP_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

/// A certificate starts a minute in the past so a client whose clock is slightly behind accepts it.
const BACKDATE: Duration = Duration::minutes(1);

/// The CA that signs hardlab users' client certificates.
pub struct UserCa {
    cert_pem: String,
    key_pem: String,
    subject_der: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
    signer: EcdsaKeyPair,
}

impl std::fmt::Debug for UserCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCa").finish_non_exhaustive()
    }
}

/// A signed certificate and the facts the caller stores or prints.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// What the proxy reads from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub user: String,
    pub roles: Vec<String>,
    pub serial_hex: String,
    pub not_after: OffsetDateTime,
}

impl UserCa {
    /// A new CA with an ECDSA P-256 key, valid ten years.
    pub fn generate(common_name: &str) -> Result<Self, ProxyError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its certificate and PKCS#8 private key (ECDSA P-256), both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ProxyError> {
        let cert_der = pem_body(cert_pem, "CERTIFICATE")?;
        let (_, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|error| ProxyError::Certificate(format!("user CA certificate: {error}")))?;
        let subject_der = cert.tbs_certificate.subject.as_raw().to_vec();
        let subject_key_id = cert.extensions().iter().find_map(|ext| {
            if let ParsedExtension::SubjectKeyIdentifier(id) = ext.parsed_extension() {
                Some(id.0.to_vec())
            } else {
                None
            }
        });
        let key_der = pem_body(key_pem, "PRIVATE KEY")?;
        let signer = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &key_der,
            &SystemRandom::new(),
        )
        .map_err(|error| {
            ProxyError::Certificate(format!(
                "user CA key: not a PKCS#8 ECDSA P-256 key ({error})"
            ))
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            subject_der,
            subject_key_id,
            signer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Signs a client certificate for `user` with one `O=` per role, for the public key in the CSR.
    /// The CSR's own subject is ignored: the server, not the client, decides who the holder is.
    pub fn issue_client_cert(
        &self,
        csr_pem: &str,
        user: &str,
        roles: &[String],
        lifetime: Duration,
    ) -> Result<IssuedCert, ProxyError> {
        let spki = verified_csr_public_key(csr_pem)?;
        let mut subject = vec![(OID_COMMON_NAME, user.to_owned())];
        subject.extend(roles.iter().map(|role| (OID_ORGANIZATION, role.clone())));
        self.sign(&spki, &subject, lifetime, &Usage::Client)
    }

    /// Signs the proxy's serving certificate for the given DNS names and IP addresses.
    pub fn issue_server_cert(
        &self,
        hosts: &[String],
        lifetime: Duration,
    ) -> Result<(IssuedCert, String), ProxyError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let subject = vec![(OID_COMMON_NAME, "hardlab access proxy".to_owned())];
        let issued = self.sign(
            &rcgen::PublicKeyData::subject_public_key_info(&key),
            &subject,
            lifetime,
            &Usage::Server(hosts.to_vec()),
        )?;
        Ok((issued, key.serialize_pem()))
    }

    fn sign(
        &self,
        spki_der: &[u8],
        subject: &[(&[u64], String)],
        lifetime: Duration,
        usage: &Usage,
    ) -> Result<IssuedCert, ProxyError> {
        let rng = SystemRandom::new();
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut serial)
            .map_err(|_| ProxyError::Certificate("no randomness for a serial number".into()))?;
        // A positive INTEGER that is never zero.
        serial[0] = (serial[0] & 0x7f) | 0x01;
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let not_before = now - BACKDATE;
        let not_after = now.checked_add(lifetime).ok_or_else(|| {
            ProxyError::BadRequest(format!("a lifetime of {lifetime} is too long"))
        })?;
        let (Some(not_before_asn1), Some(not_after_asn1)) = (
            UTCTime::from_datetime_opt(not_before),
            UTCTime::from_datetime_opt(not_after),
        ) else {
            return Err(ProxyError::Certificate(
                "certificate validity outside UTCTime's years".into(),
            ));
        };
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                w.next().write_bigint_bytes(&serial, true);
                write_signature_algorithm(w.next());
                w.next().write_der(&self.subject_der);
                w.next().write_sequence(|w| {
                    w.next().write_utctime(&not_before_asn1);
                    w.next().write_utctime(&not_after_asn1);
                });
                w.next().write_sequence_of(|w| {
                    for (oid, value) in subject {
                        w.next().write_set_of(|w| {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                                w.next().write_utf8_string(value);
                            });
                        });
                    }
                });
                w.next().write_der(spki_der);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence_of(|w| {
                        write_extension(w.next(), OID_BASIC_CONSTRAINTS, true, |w| {
                            w.write_sequence(|_| {});
                        });
                        // digitalSignature only: the key signs TLS handshakes, nothing else.
                        write_extension(w.next(), OID_KEY_USAGE, true, |w| {
                            w.write_bitvec_bytes(&[0x80], 1);
                        });
                        let purpose = match usage {
                            Usage::Client => OID_KP_CLIENT_AUTH,
                            Usage::Server(_) => OID_KP_SERVER_AUTH,
                        };
                        write_extension(w.next(), OID_EXT_KEY_USAGE, false, |w| {
                            w.write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(purpose));
                            });
                        });
                        if let Some(key_id) = &self.subject_key_id {
                            write_extension(w.next(), OID_AUTHORITY_KEY_ID, false, |w| {
                                w.write_sequence(|w| {
                                    w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                                        w.write_bytes(key_id);
                                    });
                                });
                            });
                        }
                        if let Usage::Server(hosts) = usage {
                            write_extension(w.next(), OID_SUBJECT_ALT_NAME, false, |w| {
                                w.write_sequence(|w| {
                                    for host in hosts {
                                        write_general_name(w.next(), host);
                                    }
                                });
                            });
                        }
                    });
                });
            });
        });
        let signature = self
            .signer
            .sign(&rng, &tbs)
            .map_err(|_| ProxyError::Certificate("signing the certificate failed".into()))?;
        let cert_der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                write_signature_algorithm(w.next());
                w.next()
                    .write_bitvec_bytes(signature.as_ref(), signature.as_ref().len() * 8);
            });
        });
        Ok(IssuedCert {
            cert_pem: to_pem("CERTIFICATE", &cert_der),
            serial_hex: hex::encode(serial),
            not_before,
            not_after,
        })
    }
}

enum Usage {
    Client,
    Server(Vec<String>),
}

fn write_signature_algorithm(w: yasna::DERWriter<'_>) {
    w.write_sequence(|w| {
        w.next()
            .write_oid(&ObjectIdentifier::from_slice(OID_ECDSA_WITH_SHA256));
    });
}

fn write_extension(
    w: yasna::DERWriter<'_>,
    oid: &[u64],
    critical: bool,
    value: impl FnOnce(yasna::DERWriter<'_>),
) {
    let value_der = yasna::construct_der(value);
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(&value_der);
    });
}

fn write_general_name(w: yasna::DERWriter<'_>, host: &str) {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            w.write_tagged_implicit(yasna::Tag::context(7), |w| w.write_bytes(&ip.octets()));
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            w.write_tagged_implicit(yasna::Tag::context(7), |w| w.write_bytes(&ip.octets()));
        }
        Err(_) => w.write_tagged_implicit(yasna::Tag::context(2), |w| {
            w.write_ia5_string(host);
        }),
    }
}

/// The DER SubjectPublicKeyInfo of a CSR whose self-signature checks out (proof the requester
/// holds the private key).
fn verified_csr_public_key(csr_pem: &str) -> Result<Vec<u8>, ProxyError> {
    let der = pem_body(csr_pem, "CERTIFICATE REQUEST")?;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|error| ProxyError::BadRequest(format!("certificate request: {error}")))?;
    csr.verify_signature().map_err(|error| {
        ProxyError::BadRequest(format!(
            "certificate request: the signature does not verify ({error})"
        ))
    })?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

/// Reads user, roles, serial and expiry from a client certificate the TLS layer already verified.
pub fn client_identity(cert_der: &[u8]) -> Result<ClientIdentity, ProxyError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|error| ProxyError::Certificate(format!("client certificate: {error}")))?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| ProxyError::Certificate("client certificate has no CN".into()))?
        .to_owned();
    let roles = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|error| ProxyError::Certificate(format!("client certificate expiry: {error}")))?;
    Ok(ClientIdentity {
        user,
        roles,
        serial_hex: hex::encode(cert.raw_serial()),
        not_after,
    })
}

/// Makes a fresh key on the client and a CSR for it; the key never leaves the client.
pub fn new_key_and_csr(user: &str) -> Result<(String, String), ProxyError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    let csr = params.serialize_request(&key)?;
    let csr_pem = csr.pem()?;
    Ok((key.serialize_pem(), csr_pem))
}

/// The body of the first PEM block with this label.
pub fn pem_body(pem_text: &str, label: &str) -> Result<Vec<u8>, ProxyError> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes()) {
        let block =
            block.map_err(|error| ProxyError::BadRequest(format!("{label} PEM: {error}")))?;
        if block.label == label {
            return Ok(block.contents);
        }
    }
    Err(ProxyError::BadRequest(format!(
        "no PEM block labelled {label}"
    )))
}

pub fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem_text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem_text.push_str(&String::from_utf8_lossy(line));
        pem_text.push('\n');
    }
    pem_text.push_str(&format!("-----END {label}-----\n"));
    pem_text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_carries_the_user_as_cn_and_every_role_as_an_o() {
        let ca = UserCa::generate("test user CA").unwrap();
        let (_key, csr) = new_key_and_csr("mallory-wishes").unwrap();
        let roles = vec![
            "developer".to_owned(),
            "auditor".to_owned(),
            "admin".to_owned(),
        ];
        let issued = ca
            .issue_client_cert(&csr, "bob", &roles, Duration::hours(12))
            .unwrap();
        let der = pem_body(&issued.cert_pem, "CERTIFICATE").unwrap();
        let identity = client_identity(&der).unwrap();
        assert_eq!(identity.user, "bob");
        assert_eq!(identity.roles, roles);
        assert_eq!(identity.serial_hex, issued.serial_hex);
        let lifetime = identity.not_after - OffsetDateTime::now_utc();
        assert!(lifetime > Duration::hours(11) && lifetime <= Duration::hours(12));
    }

    #[test]
    fn the_issued_certificate_verifies_against_the_ca_and_has_client_auth_usage() {
        let ca = UserCa::generate("test user CA").unwrap();
        let (_key, csr) = new_key_and_csr("bob").unwrap();
        let issued = ca
            .issue_client_cert(&csr, "bob", &["developer".into()], Duration::hours(1))
            .unwrap();
        let ca_der = pem_body(ca.cert_pem(), "CERTIFICATE").unwrap();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let der = pem_body(&issued.cert_pem, "CERTIFICATE").unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
    }

    #[test]
    fn a_csr_whose_signature_does_not_verify_is_refused() {
        let ca = UserCa::generate("test user CA").unwrap();
        let (_key, csr) = new_key_and_csr("bob").unwrap();
        let mut der = pem_body(&csr, "CERTIFICATE REQUEST").unwrap();
        let last = der.len() - 3;
        der[last] ^= 0xff;
        let tampered = to_pem("CERTIFICATE REQUEST", &der);
        let error = ca
            .issue_client_cert(&tampered, "bob", &[], Duration::hours(1))
            .unwrap_err();
        assert!(error.to_string().contains("certificate request"), "{error}");
    }

    #[test]
    fn a_ca_reloaded_from_its_pem_signs_certificates_the_original_verifies() {
        let ca = UserCa::generate("test user CA").unwrap();
        let reloaded = UserCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let (_key, csr) = new_key_and_csr("bob").unwrap();
        let issued = reloaded
            .issue_client_cert(&csr, "bob", &[], Duration::minutes(5))
            .unwrap();
        let ca_der = pem_body(ca.cert_pem(), "CERTIFICATE").unwrap();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let der = pem_body(&issued.cert_pem, "CERTIFICATE").unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }
}
