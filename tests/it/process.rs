//! The real `portcullis` binary as a process: start `run` on a config,
//! wait for `/readyz`, send it signals, read what it logged, and plain
//! HTTP/1.1 over std sockets for clients that must see every connection
//! error. Used where the behaviour is the process's own (signals, the
//! hand-over of listening sockets).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A config folder: `portcullis.yaml` with a plain listener, a metrics
/// listener, `grace_period_seconds: 1` and `extra` (top-level lines), and
/// `policies/apps.yaml` holding `policies`.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub metrics_port: u16,
}

impl ConfigDir {
    /// `listener_extra`: more keys of the listener (indented by four).
    pub fn new(listener_extra: &str, extra: &str, policies: &str) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::harness::free_port();
        let metrics_port = crate::harness::free_port();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/apps.yaml"), policies).unwrap();
        std::fs::write(
            dir.path().join("portcullis.yaml"),
            format!(
                "listen:\n  - addr: 127.0.0.1:{port}\n{listener_extra}auth_domain: auth.localhost\nmetrics: {{ listen: \"127.0.0.1:{metrics_port}\" }}\nthreads: 1\ngrace_period_seconds: 1\npolicies: policies\n{extra}"
            ),
        )
        .unwrap();
        ConfigDir {
            dir,
            port,
            metrics_port,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("portcullis.yaml")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A running `portcullis run`; killed when dropped.
pub struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Running {
    /// `portcullis run -c cfg` plus `args`, logging at info to a buffer.
    pub fn start(cfg: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .arg("run")
            .args(args)
            .arg("-c")
            .arg(cfg)
            .env("RUST_LOG", "info,pingora_core=warn,pingora_proxy=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }

    /// Send `signal` (`HUP`, `QUIT`, `TERM`…) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Wait up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Wait until `/readyz` on `metrics_port` answers 200; panics with the
    /// log if it does not within `timeout` or the process exits.
    pub fn wait_ready(&mut self, metrics_port: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let addr = SocketAddr::from(([127, 0, 0, 1], metrics_port));
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                panic!("portcullis exited ({s}) before ready:\n{}", self.stderr());
            }
            if matches!(get(addr, "127.0.0.1", "/readyz"), Ok((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "portcullis not ready within {timeout:?}:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` with `Host: host` on a new connection (`Connection: close`):
/// the status and the body.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = status_of(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no status line in {text:?}"),
        )
    })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The status code of a response text.
pub fn status_of(text: &str) -> Option<u16> {
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}
