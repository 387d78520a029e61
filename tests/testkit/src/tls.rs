//! Test certificates made at test time with the `openssl` command (no key or certificate is
//! checked in): a CA and a server certificate it signs for `localhost` and `127.0.0.1`, for the
//! TLS-enabled PostgreSQL and Redis servers of the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::find_program;
use crate::{Result, TestkitError, io_err};

/// A throwaway CA and a server certificate it signed, as PEM files in a temporary directory
/// (removed on drop).
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// A new CA (its own key, so two `TestCerts` never trust each other) and a server
    /// certificate for `localhost` and `127.0.0.1`, valid for a day.
    pub fn generate() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("qs-certs-")
            .tempdir()
            .map_err(io_err("creating a temp dir for certificates"))?;
        let d = dir.path();
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(io_err("writing the certificate extensions"))?;
        let p = |name: &str| d.join(name).display().to_string();
        // A name of its own per CA: another test CA is then an unknown issuer, not a
        // look-alike whose signature fails.
        let ca_subject = format!(
            "/CN=quotestream test CA {}",
            d.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        );
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-days",
            "1",
            "-subj",
            &ca_subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
            "-subj",
            "/CN=localhost",
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("server.pem"),
            "-days",
            "1",
            "-extfile",
            &p("server.ext"),
        ])?;
        Ok(Self { dir })
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), signed by [`TestCerts::ca`].
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM, unencrypted).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// Copies the server certificate and key into `dir` (a server's own directory, where it
    /// can own them with the permissions it insists on) and returns their paths.
    pub(crate) fn install_server_files(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::copy(self.server_cert(), &cert).map_err(io_err("copying the certificate"))?;
        std::fs::copy(self.server_key(), &key).map_err(io_err("copying the key"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("chmod 600 on the key"))?;
        Ok((cert, key))
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    let program = find_program("openssl", &[])?;
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(io_err("running openssl"))?;
    if !out.status.success() {
        return Err(TestkitError::Failed {
            what: format!("openssl {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}
