//! What the integration tests and the benchmarks share, so each is written
//! once: the service binary as a child process (`process`), a private
//! PostgreSQL server that a test may stop (`postgres`), an OTLP/HTTP
//! receiver that captures exported spans (`otlp`), and HAProxy in front of
//! several replicas (`haproxy`). Nothing here knows the
//! service's code; callers build the command lines and settings.

#![forbid(unsafe_code)]

pub mod haproxy;
pub mod otlp;
pub mod postgres;
pub mod process;

pub use haproxy::{Haproxy, free_port};
pub use otlp::{CapturedSpan, OtlpReceiver};
pub use postgres::PrivatePostgres;
pub use process::{ServiceProcess, rss_mib};
