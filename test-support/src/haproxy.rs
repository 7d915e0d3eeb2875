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
/// A port free now, for a process that binds it a moment later. Taken
/// below Linux's ephemeral range (32768 and up): a port the kernel hands
/// out for port 0 can be given to an outgoing connection of any test in
/// the meantime (a replica then failed to bind it). Ports go out in turn
/// from a start that differs per process, each checked free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
