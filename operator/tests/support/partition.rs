//! A TCP proxy between one client and the API server that a test can cut, as a network
//! partition would: while cut, no byte passes in either direction on any connection, old or
//! new, and nothing is closed (requests hang, as they do when packets are dropped); healed,
//! the bytes held back flow again. TLS passes through untouched.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy, on a free loopback port, with its own thread and runtime (stopped on drop).
#[derive(Debug)]
pub struct Partition {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Partition {
    /// Forwards a new loopback port to `upstream`, open.
    pub fn start(upstream: SocketAddr) -> Self {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (open, open_rx) = watch::channel(true);
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                tokio::select! {
                    _ = stop_rx => {}
                    _ = accept_loop(listener, upstream, open_rx) => {}
                }
            });
            // Dropping the runtime ends every connection task.
        });
        Self {
            addr,
            open,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Holds every byte back from now on.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Lets the bytes flow again.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, open: watch::Receiver<bool>) {
    while let Ok((client, _)) = listener.accept().await {
        let open = open.clone();
        tokio::spawn(async move {
            // A connection made during the cut reaches the server only after it heals.
            let mut gate = open.clone();
            if gate.wait_for(|o| *o).await.is_err() {
                return;
            }
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pipe(client_read, server_write, open.clone()),
                pipe(server_read, client_write, open),
            );
        });
    }
}

/// Copies `from` to `to`, reading only while the proxy is open (a cut leaves the bytes in the
/// kernel's buffers, where the senders' windows fill up, as with dropped packets).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Cut while waiting for bytes: stop reading until healed.
            _ = open.wait_for(|o| !*o) => continue,
        };
        // Bytes read just before a cut are held until it heals.
        if open.wait_for(|o| *o).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
