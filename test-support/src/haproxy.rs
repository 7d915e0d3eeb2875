//! HAProxy in front of several service replicas, as docs/operations.md
//! configures it: `/ready` health checks, and a request refused by one
//! replica (connection refused, 503) retried on another. Runs the Debian
//! `haproxy` binary in the foreground; stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy; killed when dropped.
pub struct Haproxy {
    child: Child,
    /// The frontend's port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// A free port on 127.0.0.1 (bound, then released for the caller).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The configuration docs/operations.md shows, for `backends` on 127.0.0.1.
pub fn config(port: u16, backends: &[u16]) -> String {
    let mut text = format!(
        "global\n\
         \x20   maxconn 4096\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         \x20   timeout http-keep-alive 10s\n\
         \x20   option http-keep-alive\n\
         \x20   retries 3\n\
         \x20   option redispatch 1\n\
         \x20   retry-on conn-failure empty-response response-timeout 503\n\
         frontend webhooks\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   option http-buffer-request\n\
         \x20   default_backend replicas\n\
         backend replicas\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk GET /ready\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2\n"
    );
    for (i, backend) in backends.iter().enumerate() {
        text.push_str(&format!(
            "    server replica{} 127.0.0.1:{backend} check\n",
            i + 1
        ));
    }
    text
}

impl Haproxy {
    /// Starts HAProxy on a free port in front of `backends`; panics with a
    /// clear message when the `haproxy` binary is missing.
    pub fn start(backends: &[u16]) -> Haproxy {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config(port, backends)).expect("write haproxy.cfg");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (Debian package `haproxy`; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
