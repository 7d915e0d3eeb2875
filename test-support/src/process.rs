//! A service binary as a child process: its output captured line by line,
//! its address read from its JSON "listening" log line, its memory read
//! from /proc, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running service process; killed when dropped.
pub struct ServiceProcess {
    child: Child,
    /// `http://HOST:PORT` it listens on.
    pub address: String,
    /// Every line it wrote to stdout and stderr so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// From spawn to the "listening" line.
    pub started: Duration,
}

impl ServiceProcess {
    /// Spawns `command` (its stdout and stderr are captured) and waits, up
    /// to `timeout`, for its JSON log line `{"message":"listening",
    /// "address":…}`. Panics with the output if it exits or never listens.
    pub fn start(mut command: Command, timeout: Duration) -> ServiceProcess {
        let clock = Instant::now();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the service binary starts");
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let deadline = clock + timeout;
        let address = loop {
            if let Some(address) =
                listening_address(&logs.lock().unwrap_or_else(|e| e.into_inner()))
            {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the service exited with {status}: {:?}",
                    logs.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
            assert!(
                Instant::now() < deadline,
                "the service did not start within {timeout:?}: {:?}",
                logs.lock().unwrap_or_else(|e| e.into_inner())
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        ServiceProcess {
            child,
            address,
            logs,
            started: clock.elapsed(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.pid())
    }

    /// Everything logged so far, one line each.
    pub fn log_text(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("the service exits")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn listening_address(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        (value["message"] == "listening")
            .then(|| value["address"].as_str().map(|a| format!("http://{a}")))?
    })
}

/// Resident memory of process `pid` in MiB (0 when it cannot be read).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_listening_line() {
        let lines = vec![
            "not json".to_string(),
            r#"{"message":"starting"}"#.to_string(),
            r#"{"message":"listening","address":"127.0.0.1:4321"}"#.to_string(),
        ];
        assert_eq!(
            listening_address(&lines).as_deref(),
            Some("http://127.0.0.1:4321")
        );
        assert_eq!(listening_address(&lines[..2]), None);
    }

    #[test]
    fn this_process_has_memory() {
        assert!(rss_mib(std::process::id()) > 0.0);
        assert_eq!(rss_mib(u32::MAX), 0.0);
    }
}
