use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// The ports this process has handed out: each goes to one server for the whole test run.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago (the OS picks it). Servers are started on it
/// right away; the rare race with another process is caught by the readiness wait.
///
/// Never the same port twice in one process: a test that stops a server and restarts it on its
/// port (an outage) must find the port still its own, not given meanwhile to a server another
/// test of the same binary started (seen in CI: `Address already in use` on a restart).
pub fn free_port() -> std::io::Result<u16> {
    // The OS rarely picks the same port twice in a row; a few tries always find a new one.
    for _ in 0..64 {
        let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no loopback port this process has not used already",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_handed_out_once() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
