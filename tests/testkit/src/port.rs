use std::net::TcpListener;

/// A loopback port that was free a moment ago (the OS picks it). Servers are started on it
/// right away; the rare race with another process is caught by the readiness wait.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
