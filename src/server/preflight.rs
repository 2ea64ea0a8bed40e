//! Checks run before the Pingora server starts, so that a start that cannot
//! work fails at once with one line naming the cause (DESIGN "Operations":
//! exit non-zero within 10 s) instead of Pingora retrying a bind for 30 s
//! and panicking in a thread while the process keeps running:
//!
//! - every TLS listener's certificate chain and private key are read,
//!   parsed and checked to match ([`check_tls`], also run by `check`, and
//!   [`load_tls`] on every certificate reload);
//! - every listening address (proxy and metrics) can be bound now
//!   ([`check_bind`]; not during a graceful upgrade, when the old process
//!   holds them);
//! - the folder of `upgrade_sock` is private ([`check_upgrade_dir`]): no
//!   one else may create the socket the listening sockets are sent to.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why a TLS listener's files are not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsFileError {
    #[error("certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("private key {key} does not match certificate {cert}")]
    Mismatch { cert: String, key: String },
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Read and parse a listener's certificate chain and key, and check that
/// the key belongs to the first certificate.
pub fn check_tls(files: &TlsFiles) -> Result<(), TlsFileError> {
    load_tls(files).map(drop)
}

/// [`check_tls`], keeping what it read: the chain and key as rustls serves
/// them (`server::tls` swaps them in on a reload).
pub fn load_tls(files: &TlsFiles) -> Result<rustls::sign::CertifiedKey, TlsFileError> {
    let cert_err = |reason: String| TlsFileError::Cert {
        path: shown(&files.cert),
        reason,
    };
    let key_err = |reason: String| TlsFileError::Key {
        path: shown(&files.key),
        reason,
    };
    let pem = std::fs::read(&files.cert).map_err(|e| cert_err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err("holds no PEM certificate".into()));
    }
    let pem = std::fs::read(&files.key).map_err(|e| key_err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key_err(format!("no usable PEM private key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_err(format!("unsupported key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|_| TlsFileError::Mismatch {
        cert: shown(&files.cert),
        key: shown(&files.key),
    })?;
    Ok(certified)
}

/// Whether `addr` can be bound now (it is released again at once; the
/// server binds it a moment later).
pub fn check_bind(addr: SocketAddr) -> Result<(), std::io::Error> {
    TcpListener::bind(addr).map(drop)
}

/// Whether every address can be bound at the same time (so two listeners
/// that clash, such as `0.0.0.0:443` and `[::]:443`, are caught too); all
/// are released at the end. The first that cannot is returned.
pub fn check_bind_all(
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<(), (SocketAddr, std::io::Error)> {
    let mut held = Vec::new();
    for addr in addrs {
        held.push(TcpListener::bind(addr).map_err(|e| (addr, e))?);
    }
    Ok(())
}

/// Whether the folder of the upgrade socket `sock` is one only this user
/// (or root) can create files in: it exists, is a folder, is owned by this
/// user or root, and is not writable by group or others. Otherwise another
/// local user could create the socket first and receive the listening
/// sockets of a graceful upgrade (the old process sends them to whatever
/// listens there). Checked by the new process before it listens there and
/// by the old one before it sends.
pub fn check_upgrade_dir(sock: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = match sock.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| format!("folder {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "folder {} belongs to uid {}, not to this user ({me}) or root",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "folder {} is writable by group or others (mode {:o}); use a private folder such as the state directory",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::write(dir.join("c.pem"), cert).unwrap();
        std::fs::write(dir.join("k.pem"), key).unwrap();
        TlsFiles {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
        }
    }

    fn self_signed() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["auth.localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = self_signed();
        assert_eq!(check_tls(&files(dir.path(), &c, &k)), Ok(()));
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = TlsFiles {
            cert: dir.path().join("nope.crt"),
            key: dir.path().join("nope.key"),
        };
        let e = check_tls(&f).unwrap_err().to_string();
        assert!(
            e.starts_with("certificate ") && e.contains("nope.crt"),
            "{e}"
        );
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k) = self_signed();
        let e = check_tls(&files(dir.path(), "hello\n", &k)).unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = self_signed();
        let (_, other) = self_signed();
        let e = check_tls(&files(dir.path(), &c, &other)).unwrap_err();
        assert!(matches!(e, TlsFileError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn a_certificate_given_as_the_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = self_signed();
        let e = check_tls(&files(dir.path(), &c, &c)).unwrap_err();
        assert!(e.to_string().starts_with("private key "), "{e}");
    }

    #[test]
    fn listeners_that_clash_with_each_other_are_caught() {
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, e) = check_bind_all([free, free]).unwrap_err();
        assert_eq!(addr, free);
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(check_bind_all([free]).is_ok());
    }

    #[test]
    fn the_upgrade_socket_must_live_in_a_private_folder() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("upgrade.sock");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_upgrade_dir(&sock), Ok(()));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = check_upgrade_dir(&sock).unwrap_err();
        assert!(e.contains("writable by group or others"), "{e}");
        let e = check_upgrade_dir(&dir.path().join("nope/upgrade.sock")).unwrap_err();
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn an_address_in_use_cannot_be_bound() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = check_bind(addr).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        drop(held);
        assert!(check_bind(addr).is_ok());
    }
}
