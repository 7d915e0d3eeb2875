//! TCP_NODELAY on PostgreSQL connections: the crate's only `unsafe` code.
//!
//! sqlx 0.9.0, the newest release, leaves Nagle's algorithm on
//! (<https://github.com/transact-rs/sqlx/issues/4335>; the fix,
//! <https://github.com/transact-rs/sqlx/pull/4336>, is merged but not
//! released). A statement larger than the socket's send buffer (16 KiB by
//! default on Linux) then leaves in two writes, and the second waits for
//! the server's delayed ACK: about 40 ms on every such statement (measured:
//! a 15 KiB insert took 0.8 ms, a 16 KiB one 44 ms). Delete this module and
//! its call in `store::connect` once a sqlx release sets the option.
//!
//! sqlx gives no access to its socket. So each new connection asks the
//! server for both ends of the connection as the server sees them, and the
//! socket of this process with exactly that local and peer address gets the
//! option. A descriptor is borrowed only for the duration of one call.

#![allow(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use sea_orm::sqlx::{self, PgConnection};

/// Both ends of `conn`, as the server sees them (`None` over a Unix socket).
async fn endpoints(
    conn: &mut PgConnection,
) -> Result<Option<(SocketAddr, SocketAddr)>, sqlx::Error> {
    let row: (Option<String>, Option<i32>, Option<String>, Option<i32>) = sqlx::query_as(
        "SELECT host(inet_client_addr()), inet_client_port(), \
                host(inet_server_addr()), inet_server_port()",
    )
    .fetch_one(&mut *conn)
    .await?;
    let address = |ip: Option<String>, port: Option<i32>| -> Option<SocketAddr> {
        let ip: IpAddr = ip?.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(port?).ok()?))
    };
    Ok(address(row.0, row.1).zip(address(row.2, row.3)))
}

/// Sets TCP_NODELAY on the socket of a new pool connection. Does nothing
/// when the ends cannot be matched (Unix socket, a proxy or NAT between).
pub(crate) async fn set_on(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if let Some((local, peer)) = endpoints(conn).await? {
        with_socket(local, peer, |socket| {
            if socket.tcp_nodelay().is_ok_and(|on| !on) {
                let _ = socket.set_tcp_nodelay(true);
            }
        });
    }
    Ok(())
}

/// Whether this process's socket from `local` to `peer` has TCP_NODELAY
/// (`None`: no such socket). For tests and diagnostics.
pub fn is_set(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
    with_socket(local, peer, |socket| socket.tcp_nodelay().ok()).flatten()
}

/// Runs `f` on this process's TCP socket from `local` to `peer`, if any.
#[cfg(target_os = "linux")]
fn with_socket<T>(
    local: SocketAddr,
    peer: SocketAddr,
    f: impl FnOnce(&socket2::SockRef<'_>) -> T,
) -> Option<T> {
    use std::os::fd::BorrowedFd;
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in entries.flatten() {
        let Ok(raw) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: `raw` was an open socket descriptor when listed; it is
        // borrowed for this iteration only (getsockname, getpeername and at
        // most one getsockopt/setsockopt pair). Had another thread closed it
        // meanwhile, the calls fail harmlessly; had the number been reused,
        // the address check below no longer matches.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let socket = socket2::SockRef::from(&fd);
        let matches = |addr: std::io::Result<socket2::SockAddr>, want: SocketAddr| {
            addr.ok().and_then(|a| a.as_socket()) == Some(want)
        };
        if matches(socket.local_addr(), local) && matches(socket.peer_addr(), peer) {
            return Some(f(&socket));
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
fn with_socket<T>(
    _local: SocketAddr,
    _peer: SocketAddr,
    _f: impl FnOnce(&socket2::SockRef<'_>) -> T,
) -> Option<T> {
    None
}
