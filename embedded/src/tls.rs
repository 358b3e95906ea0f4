//! The server's credentials: a CA, a serving certificate for 127.0.0.1/localhost signed by it,
//! and a bearer token; generated at first start and kept in the data directory when there is one.

use super::error::EmbeddedError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// PEM-encoded CA certificate, serving certificate and key, and the bearer token.
#[derive(Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and token stay out of logs.
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

const FILES: [&str; 4] = ["ca.crt", "server.crt", "server.key", "token"];

fn cert_err(e: rcgen::Error) -> EmbeddedError {
    EmbeddedError::Certificate(e.to_string())
}

/// Creates a fresh CA, a serving certificate and a random token.
pub fn generate() -> Result<Credentials, EmbeddedError> {
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "orchestrator-embedded-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(cert_err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "orchestrator-embedded-apiserver");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;

    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    Ok(Credentials {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        token,
    })
}

/// Reads the credentials kept in `dir`, or generates and writes them there.
pub fn load_or_generate(dir: &Path) -> Result<Credentials, EmbeddedError> {
    let io = |source| EmbeddedError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io);
        return Ok(Credentials {
            ca_pem: read("ca.crt")?,
            cert_pem: read("server.crt")?,
            key_pem: read("server.key")?,
            token: read("token")?.trim().to_string(),
        });
    }
    let creds = generate()?;
    for (file, body) in
        FILES
            .iter()
            .zip([&creds.ca_pem, &creds.cert_pem, &creds.key_pem, &creds.token])
    {
        write_private(&dir.join(file), body).map_err(io)?;
    }
    Ok(creds)
}

fn write_private(path: &Path, body: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body.as_bytes())
}

/// A rustls server configuration offering HTTP/2 and HTTP/1.1.
pub fn server_config(creds: &Credentials) -> Result<Arc<rustls::ServerConfig>, EmbeddedError> {
    let tls = |e: &dyn std::fmt::Display| EmbeddedError::Tls(e.to_string());
    let certs =
        vec![CertificateDer::from_pem_slice(creds.cert_pem.as_bytes()).map_err(|e| tls(&e))?];
    let key = PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificate in DER, for a kube::Config's root certificates.
pub fn ca_der(creds: &Credentials) -> Result<Vec<u8>, EmbeddedError> {
    CertificateDer::from_pem_slice(creds.ca_pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| EmbeddedError::Tls(e.to_string()))
}
