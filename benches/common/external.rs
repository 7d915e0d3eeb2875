//! Load from outside the benchmark's process, and the database's own
//! ceiling, measured in the same run: `wrk` (Debian package `wrk`) posts the
//! same distinct `reservation.updated` events as `load::load`, and `pgbench`
//! (PostgreSQL's) commits the single-row upsert of a same-sized JSON
//! document, one row per transaction, on the same PostgreSQL.

use std::process::Command;

use base64::Engine;

use super::load::{ACCOUNTS, FIRST_ACCOUNT, template};
use super::{WEBHOOK_PASSWORD, WEBHOOK_USER};

/// What one `wrk` run measured.
pub struct Wrk {
    pub connections: usize,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Non-2xx answers plus socket errors.
    pub errors: u64,
    pub requests: u64,
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Lua script: each thread posts ids `first_id + thread + n × threads`.
fn wrk_script(first_id: i64, threads: usize) -> String {
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"));
    let template = template();
    format!(
        r#"local template = [==[{template}]==]
local first_id, threads, accounts, first_account = {first_id}, {threads}, {ACCOUNTS}, {FIRST_ACCOUNT}
local next_thread = 0
function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic {auth}"
request = function()
  local id = first_id + thread_index + n * threads
  n = n + 1
  local account = first_account + id % accounts
  local body = template:gsub("{{ACCOUNT}}", tostring(account)):gsub("{{ID}}", tostring(id))
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d duration_us=%d p50=%d p99=%d p999=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status + e.connect + e.read + e.write + e.timeout))
end
"#
    )
}

/// `wrk` with `connections` keep-alive connections on 2 threads for
/// `seconds` against `url`.
pub fn wrk(url: &str, connections: usize, seconds: u64, first_id: i64) -> Wrk {
    let threads = connections.min(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("webhooks.lua");
    std::fs::write(&script, wrk_script(first_id, threads)).expect("script");
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("WRK "))
        .unwrap_or_else(|| panic!("wrk printed no summary: {text}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let requests = field("requests");
    Wrk {
        connections,
        rate: requests / (field("duration_us") / 1e6),
        p50_ms: field("p50") / 1000.0,
        p99_ms: field("p99") / 1000.0,
        p999_ms: field("p999") / 1000.0,
        errors: field("errors") as u64,
        requests: requests as u64,
    }
}

/// pgbench's rate (transactions/s) of single-row upserts of a document the
/// size of one delivery, `clients` connections, `seconds` long, in a
/// schema of its own on `url` (dropped after).
pub fn pgbench_upserts(url: &str, clients: usize, seconds: u64) -> f64 {
    let schema = format!("ceiling_{}", std::process::id());
    let psql = |sql: &str| {
        let status = Command::new("psql")
            .arg(url)
            .arg("-qc")
            .arg(sql)
            .status()
            .expect("psql runs");
        assert!(status.success(), "psql: {sql}");
    };
    psql(&format!(
        "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {schema} CASCADE; \
         CREATE SCHEMA {schema}; CREATE TABLE {schema}.upserts (id bigint PRIMARY KEY, \
         account_id bigint NOT NULL, payload jsonb NOT NULL, received_at timestamptz NOT NULL)"
    ));
    let document = template()
        .replace("{ACCOUNT}", &FIRST_ACCOUNT.to_string())
        .replace("{ID}", "1")
        .replace('\'', "''");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("upsert.sql");
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, 100000000)\n\
             INSERT INTO {schema}.upserts VALUES (:id, {FIRST_ACCOUNT}, '{document}', now()) \
             ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload, \
             received_at = EXCLUDED.received_at;\n"
        ),
    )
    .expect("script");
    let mut pgbench = Command::new("pgbench");
    if ["@127.0.0.1", "@localhost", "@[::1]"]
        .iter()
        .any(|host| url.contains(host))
        && !url.contains("sslmode")
    {
        // As the service reaches a server on this host: without TLS.
        pgbench.env("PGSSLMODE", "disable");
    }
    let output = pgbench
        .arg("-n")
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg(clients.min(2).to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .expect("pgbench runs");
    psql(&format!(
        "SET client_min_messages = warning; DROP SCHEMA {schema} CASCADE"
    ));
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| {
            panic!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// A system-wide `perf record` (every process: the service, PostgreSQL,
/// the load generator) running beside a load; `finish` writes a flame graph
/// (`inferno`) and returns each program's share of the samples.
pub struct Profile {
    child: std::process::Child,
    data: tempfile::TempDir,
    svg: std::path::PathBuf,
}

impl Profile {
    /// Starts recording for `seconds` when `BENCH_PROFILE` is set: the flame
    /// graph goes to `$BENCH_PROFILE-<name>.svg`, its folded stacks beside it
    /// in `.folded` (needs `perf`,
    /// `inferno-collapse-perf` and `inferno-flamegraph`).
    pub fn start(seconds: u64, name: &str) -> Option<Profile> {
        let prefix = std::env::var("BENCH_PROFILE").ok()?;
        let svg = std::path::PathBuf::from(format!("{prefix}-{name}.svg"));
        for tool in ["perf", "inferno-collapse-perf", "inferno-flamegraph"] {
            assert!(
                have(tool),
                "BENCH_PROFILE needs {tool} (apt-get install -y linux-perf; cargo install inferno)"
            );
        }
        let data = tempfile::tempdir().expect("temp dir");
        let child = Command::new("perf")
            .args([
                "record",
                "-a",
                "-F",
                "199",
                "--call-graph",
                "dwarf,16384",
                "-q",
                "-o",
            ])
            .arg(data.path().join("perf.data"))
            .args(["--", "sleep"])
            .arg(seconds.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("perf runs");
        Some(Profile { child, data, svg })
    }

    /// Waits for the recording, writes the flame graph, and returns the
    /// share of samples per program, largest first.
    pub fn finish(mut self, title: &str) -> Vec<(String, f64)> {
        let _ = self.child.wait();
        let data = self.data.path().join("perf.data");
        let script = Command::new("perf")
            .arg("script")
            .arg("-i")
            .arg(&data)
            .output()
            .expect("perf script");
        let collapsed = pipe("inferno-collapse-perf", &[], &script.stdout);
        let svg = pipe(
            "inferno-flamegraph",
            &["--title", title, "--width", "1600"],
            &collapsed,
        );
        std::fs::write(&self.svg, svg).expect("flame graph written");
        std::fs::write(self.svg.with_extension("folded"), &collapsed).expect("stacks written");
        println!("flame graph: {}", self.svg.display());
        // Samples per process, named by its main thread's command (read
        // while the processes still run: the service, PostgreSQL, wrk).
        let pids = Command::new("perf")
            .args(["script", "-F", "pid", "-i"])
            .arg(&data)
            .output()
            .expect("perf script");
        let mut by_program: std::collections::HashMap<String, f64> = Default::default();
        let mut total: f64 = 0.0;
        let mut names: std::collections::HashMap<String, String> = Default::default();
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let program = names.entry(pid.to_string()).or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_else(|_| if pid == "0" { "idle" } else { "other" }.to_string())
            });
            *by_program.entry(program.clone()).or_default() += 1.0;
            total += 1.0;
        }
        let mut shares: Vec<(String, f64)> = by_program
            .into_iter()
            .map(|(program, n)| (program, n / total.max(1.0)))
            .collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1));
        shares
    }
}

fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("output");
    let _ = writer.join();
    output.stdout
}
