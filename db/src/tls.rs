//! TLS to PostgreSQL with libpq's settings: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of the CA certificates to trust,
//! or `system` for the Mozilla roots built in). tokio-postgres knows only disable/prefer/require
//! and no `sslrootcert`, so [`split_tls_params`] takes them out of the connection string first
//! and [`TlsSettings::connector`] builds the rustls side (ring provider, as the rest of the
//! workspace).
//!
//! As in libpq: `prefer` and `require` encrypt without checking who answers (unless a root
//! certificate is given, then `require` checks the chain like `verify-ca`); `verify-ca` checks
//! that a trusted CA signed the server's certificate; `verify-full` also that it names the host
//! of the connection string.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::PostgresConfigError;

/// libpq's `sslmode` values (`allow` is not offered: it would try plain text first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it, plain text otherwise (libpq's and tokio-postgres' default).
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, PostgresConfigError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(PostgresConfigError::Tls {
                    problem: format!(
                        "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                    ),
                });
            }
        })
    }

    /// What tokio-postgres negotiates; the checks of verify-ca/verify-full are rustls'.
    pub fn negotiation(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// Which certificates the server's chain must end in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file (the path as written in the connection string).
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla roots compiled in (a managed database with a public CA).
    System,
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub root_cert: Option<RootCert>,
}

/// Takes `sslmode` and `sslrootcert` out of a connection string (URL query parameters or
/// `key=value` words), returns the rest for tokio-postgres and the TLS settings. Refuses the
/// client-certificate settings this build does not implement, rather than ignoring them.
pub fn split_tls_params(dsn: &str) -> Result<(String, TlsSettings), PostgresConfigError> {
    let (rest, params) = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        split_url(dsn)
    } else {
        split_key_values(dsn)?
    };
    let mut tls = TlsSettings::default();
    for (key, value) in params {
        match key.as_str() {
            "sslmode" => tls.mode = TlsMode::parse(&value)?,
            "sslrootcert" if value == "system" => tls.root_cert = Some(RootCert::System),
            "sslrootcert" => tls.root_cert = Some(RootCert::File(PathBuf::from(value))),
            _ => {
                return Err(PostgresConfigError::Tls {
                    problem: format!(
                        "{key} (client certificates) is not supported; authenticate with a password in the connection string"
                    ),
                });
            }
        }
    }
    Ok((rest, tls))
}

/// The parameters [`split_tls_params`] handles itself.
fn is_tls_param(key: &str) -> bool {
    matches!(
        key,
        "sslmode" | "sslrootcert" | "sslcert" | "sslkey" | "sslpassword" | "sslcrl"
    )
}

fn split_url(dsn: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = dsn.split_once('?') else {
        return (dsn.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if is_tls_param(key) {
            taken.push((key.to_owned(), percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// `%XX` escapes of a URL query value (a path such as `%2Fetc%2Fca.pem`); `+` stays a plus,
/// as in libpq.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `key = value` form: values bare (backslash escapes) or single-quoted (`\'`, `\\`).
/// The TLS words are cut out by their byte span so everything else reaches tokio-postgres
/// exactly as written.
fn split_key_values(dsn: &str) -> Result<(String, Vec<(String, String)>), PostgresConfigError> {
    let bytes = dsn.as_bytes();
    let mut rest = String::with_capacity(dsn.len());
    let mut taken = Vec::new();
    let mut i = 0;
    let mut kept_from = 0;
    let unterminated = || PostgresConfigError::InvalidDsn {
        reason: "unterminated quoted value".into(),
    };
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &dsn[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            // Not key=value: leave it for tokio-postgres, whose error names the problem.
            return Ok((dsn.to_owned(), Vec::new()));
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(unterminated()),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        value.push(*bytes.get(i + 1).ok_or_else(unterminated)?);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        if is_tls_param(key) {
            rest.push_str(&dsn[kept_from..start]);
            kept_from = i;
            taken.push((key.to_owned(), String::from_utf8_lossy(&value).into_owned()));
        }
    }
    rest.push_str(&dsn[kept_from..]);
    Ok((rest.trim().to_owned(), taken))
}

impl TlsSettings {
    /// The rustls connector for these settings. Reads the root certificate file now, so a
    /// missing or unreadable CA stops the process at start with the file's name.
    pub fn connector(&self) -> Result<MakeRustlsConnect, PostgresConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PostgresConfigError::Tls {
                problem: format!("rustls: {e}"),
            })?;
        let roots = match &self.root_cert {
            Some(root) => Some(Arc::new(load_roots(root)?)),
            None => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (TlsMode::VerifyCa | TlsMode::VerifyFull, None) => {
                return Err(PostgresConfigError::Tls {
                    problem: format!(
                        "sslmode={} needs sslrootcert=/path/to/ca.pem (the CA that signed the server's certificate) or sslrootcert=system",
                        if self.mode == TlsMode::VerifyCa {
                            "verify-ca"
                        } else {
                            "verify-full"
                        }
                    ),
                });
            }
            (TlsMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
            // libpq: with a root certificate, require checks the chain (as verify-ca).
            (TlsMode::VerifyCa | TlsMode::Require, Some(roots)) => Arc::new(Lenient {
                chain: Some(webpki(roots, &provider)?),
                provider,
            }),
            (_, _) => Arc::new(Lenient {
                provider,
                chain: None,
            }),
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

fn webpki(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, PostgresConfigError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| PostgresConfigError::Tls {
            problem: format!("building the certificate verifier: {e}"),
        })
}

fn load_roots(root: &RootCert) -> Result<RootCertStore, PostgresConfigError> {
    let path = match root {
        RootCert::System => {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        }
        RootCert::File(path) => path,
    };
    let bad = |problem: String| PostgresConfigError::RootCert {
        path: path.display().to_string(),
        problem,
    };
    let certs = read_pem_certs(path).map_err(bad)?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("it holds no usable CA certificate".into()));
    }
    Ok(store)
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no -----BEGIN CERTIFICATE----- block in it".into());
    }
    Ok(certs)
}

/// libpq's two weaker modes. verify-ca: the chain must end in a trusted root; the name in the
/// certificate is not checked. prefer/require without a root certificate: the connection is
/// encrypted but any certificate is accepted. In both the handshake signature is checked with
/// the provider's algorithms (what [`WebPkiServerVerifier`] built on that provider checks too).
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    /// verify-ca's chain check; None: encrypt only.
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The chain is checked before the name: this error means the chain was good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(dsn: &str) -> (String, TlsSettings) {
        split_tls_params(dsn).unwrap()
    }

    /// `dsn` split into `rest` and the TLS settings `mode` and `root_cert`.
    fn assert_split(dsn: &str, rest: &str, mode: TlsMode, root_cert: Option<RootCert>) {
        let (left, tls) = split(dsn);
        assert_eq!(left, rest, "{dsn}");
        assert_eq!(tls.mode, mode, "{dsn}");
        assert_eq!(tls.root_cert, root_cert, "{dsn}");
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        assert_split(
            "postgres://u:p@db:5432/market?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            "postgres://u:p@db:5432/market?application_name=x",
            TlsMode::VerifyFull,
            Some(RootCert::File("/etc/ca.pem".into())),
        );
        assert_split(
            "postgresql://u@db/market?sslmode=require",
            "postgresql://u@db/market",
            TlsMode::Require,
            None,
        );
        assert_eq!(split("postgres://db/m").1, TlsSettings::default());
    }

    #[test]
    fn key_value_words_are_taken_out_with_quotes_and_escapes() {
        assert_split(
            "host=db  sslmode = verify-ca password='a b\\'c' sslrootcert='/etc/my ca.pem' dbname=m",
            "host=db   password='a b\\'c'  dbname=m",
            TlsMode::VerifyCa,
            Some(RootCert::File("/etc/my ca.pem".into())),
        );
        let (_, tls) = split("host=db sslrootcert=system sslmode=verify-full");
        assert_eq!(tls.root_cert, Some(RootCert::System));
        assert!(split_tls_params("host=db password='open").is_err());
    }

    #[test]
    fn unknown_modes_and_client_certificates_are_refused_by_name() {
        let e = split_tls_params("postgres://db/m?sslmode=verify").unwrap_err();
        assert!(e.to_string().contains("sslmode=\"verify\""), "{e}");
        let e = split_tls_params("host=db sslcert=/c.pem").unwrap_err();
        assert!(e.to_string().contains("sslcert"), "{e}");
    }

    #[test]
    fn verification_without_a_root_certificate_says_what_to_add() {
        for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
            let e = TlsSettings {
                mode,
                root_cert: None,
            }
            .connector()
            .err()
            .unwrap();
            assert!(e.to_string().contains("needs sslrootcert="), "{e}");
        }
        for mode in [TlsMode::Disable, TlsMode::Prefer, TlsMode::Require] {
            let tls = TlsSettings {
                mode,
                root_cert: None,
            };
            assert!(tls.connector().is_ok());
        }
    }

    #[test]
    fn a_missing_or_empty_root_certificate_names_the_file() {
        let dir = std::env::temp_dir().join(format!("qs-db-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [dir.join("missing.pem"), empty] {
            let tls = TlsSettings {
                mode: TlsMode::VerifyFull,
                root_cert: Some(RootCert::File(path.clone())),
            };
            let e = tls.connector().err().unwrap();
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        let system = TlsSettings {
            mode: TlsMode::VerifyFull,
            root_cert: Some(RootCert::System),
        };
        assert!(system.connector().is_ok());
    }
}
