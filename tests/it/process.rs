//! The `sync-hostaway` binary as a child process, for what only a real
//! process can show: start-up from env vars, SIGKILL, a collector that is down.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{TestDb, config_dir, test_key};

/// A running service process; killed when dropped.
pub struct ServiceProcess {
    child: Child,
    pub address: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts the binary on `db` (test environment, any free port unless
    /// `SYNC_HOSTAWAY__SERVER__PORT` is in `env`) and waits until it listens.
    pub fn start(db: &TestDb, env: &[(&str, &str)]) -> ServiceProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sync-hostaway"));
        command
            .arg("--config-dir")
            .arg(config_dir())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SYNC_HOSTAWAY_ENV", "test")
            .env("SYNC_HOSTAWAY__DATABASE__URL", &db.url)
            .env("SYNC_HOSTAWAY__DATABASE__SCHEMA", &db.schema)
            .env("SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY", test_key())
            .env("SYNC_HOSTAWAY__TELEMETRY__LOG_FORMAT", "json")
            .env("SYNC_HOSTAWAY__TELEMETRY__LOG_FILTER", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let found = logs.lock().unwrap().iter().find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                (value["message"] == "listening")
                    .then(|| value["address"].as_str().map(str::to_string))?
            });
            if let Some(address) = found {
                break format!("http://{address}");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the service exited with {status}: {:?}",
                    logs.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the service did not start: {:?}",
                logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        ServiceProcess {
            child,
            address,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The process's resident memory now, in MiB (from /proc).
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
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

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
