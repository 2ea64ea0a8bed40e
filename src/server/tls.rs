//! TLS certificates that can be replaced while the proxy runs.
//!
//! A [`ReloadableCert`] holds one listener's certificate chain and key, read
//! from its configured files, behind an `ArcSwap`, and is the rustls
//! certificate resolver of that listener: every new handshake reads the
//! current pair, so a reload (SIGHUP) changes what new connections see
//! while open connections keep the session they made. A pair that fails the
//! start-up checks (`preflight::load_tls`: unreadable, not PEM, key of
//! another certificate) is never swapped in: the last good pair stays.
//!
//! [`TlsCerts`] is the set of every TLS listener's store, built once at
//! start; a listener of one's own (outside Pingora's TLS settings) takes
//! its store from there and builds its acceptor with
//! [`ReloadableCert::server_config`], so one reload covers it too.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{Listener, TlsFiles};
use crate::server::preflight::{load_tls, TlsFileError};

/// ALPN of a TLS listener: HTTP/2, then HTTP/1.1 (as browsers and API
/// clients negotiate with Cloudflare). Plain listeners stay HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// One listener's certificate and key, replaceable at run time.
pub struct ReloadableCert {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

impl ReloadableCert {
    /// Read `files` (checked as at start: readable, PEM, matching).
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadableCert>, TlsFileError> {
        let pair = load_tls(&files)?;
        Ok(Arc::new(ReloadableCert {
            files,
            current: ArcSwap::from_pointee(pair),
        }))
    }

    /// The certificate and key files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Read the files again and serve what they hold from the next
    /// handshake on. On error the current pair stays. `Ok(true)` when the
    /// certificate chain changed, `Ok(false)` when the files hold the pair
    /// already served.
    pub fn reload(&self) -> Result<bool, TlsFileError> {
        let pair = load_tls(&self.files)?;
        let changed = pair.cert != self.current.load().cert;
        if changed {
            self.current.store(Arc::new(pair));
        }
        Ok(changed)
    }

    /// Pingora TLS settings that serve this store (ALPN h2, http/1.1).
    pub fn tls_settings(self: &Arc<Self>) -> TlsSettings {
        // The paths are not read: the resolver replaces them.
        let mut settings = TlsSettings::intermediate("", "")
            .expect("TlsSettings::intermediate does not fail without reading files");
        settings.set_cert_resolver(self.clone());
        settings.enable_h2();
        settings
    }

    /// A rustls server config that serves this store (TLS 1.2 and 1.3,
    /// ALPN h2, http/1.1), for a listener that runs its own handshakes.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_protocol_versions(&[
            &rustls::version::TLS12,
            &rustls::version::TLS13,
        ])
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What reloading one listener's certificate did.
#[derive(Debug)]
pub struct CertReload {
    /// The listener.
    pub addr: SocketAddr,
    /// `Ok(true)`: a new certificate is served; `Ok(false)`: unchanged;
    /// `Err`: the files are not usable and the last good pair stays.
    pub result: Result<bool, TlsFileError>,
}

/// Every TLS listener's certificate store, by listener address.
#[derive(Debug, Default, Clone)]
pub struct TlsCerts {
    by_addr: Vec<(SocketAddr, Arc<ReloadableCert>)>,
}

impl TlsCerts {
    /// Load the certificate of every listener that has TLS; the first that
    /// fails is returned with its listener's address.
    pub fn load(listeners: &[Listener]) -> Result<TlsCerts, (SocketAddr, TlsFileError)> {
        let mut by_addr = Vec::new();
        for l in listeners {
            if let Some(files) = &l.tls {
                let cert = ReloadableCert::load(files.clone()).map_err(|e| (l.addr, e))?;
                by_addr.push((l.addr, cert));
            }
        }
        Ok(TlsCerts { by_addr })
    }

    /// The store of the listener at `addr`, if it has TLS.
    pub fn get(&self, addr: SocketAddr) -> Option<&Arc<ReloadableCert>> {
        self.by_addr
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, c)| c)
    }

    /// Reload every listener's certificate (blocking file reads).
    pub fn reload_all(&self) -> Vec<CertReload> {
        self.by_addr
            .iter()
            .map(|(addr, cert)| CertReload {
                addr: *addr,
                result: cert.reload(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["auth.localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn write(files: &TlsFiles, (cert, key): &(String, String)) {
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
    }

    fn files(dir: &std::path::Path) -> TlsFiles {
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    #[test]
    fn reload_serves_the_new_pair_and_reports_no_change_for_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        write(&f, &pair());
        let store = ReloadableCert::load(f.clone()).unwrap();
        let first = store.current();
        assert_eq!(store.reload(), Ok(false));
        assert!(Arc::ptr_eq(&first, &store.current()));
        write(&f, &pair());
        assert_eq!(store.reload(), Ok(true));
        assert_ne!(first.cert, store.current().cert);
    }

    #[test]
    fn a_bad_pair_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        write(&f, &pair());
        let store = ReloadableCert::load(f.clone()).unwrap();
        let good = store.current();
        // A key of another certificate.
        let (cert, _) = pair();
        let (_, other_key) = pair();
        write(&f, &(cert, other_key));
        assert!(matches!(store.reload(), Err(TlsFileError::Mismatch { .. })));
        assert!(Arc::ptr_eq(&good, &store.current()));
        // A missing certificate file.
        std::fs::remove_file(&f.cert).unwrap();
        let e = store.reload().unwrap_err().to_string();
        assert!(e.contains("tls.crt"), "{e}");
        assert!(Arc::ptr_eq(&good, &store.current()));
    }

    #[test]
    fn listeners_without_tls_have_no_store() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        write(&f, &pair());
        let certs = TlsCerts::load(&[
            Listener {
                addr: "127.0.0.1:1".parse().unwrap(),
                tls: None,
                proxy_protocol: false,
            },
            Listener {
                addr: "127.0.0.1:2".parse().unwrap(),
                tls: Some(f),
                proxy_protocol: false,
            },
        ])
        .unwrap();
        assert!(certs.get("127.0.0.1:1".parse().unwrap()).is_none());
        assert!(certs.get("127.0.0.1:2".parse().unwrap()).is_some());
        assert_eq!(certs.reload_all().len(), 1);
    }
}
