//! A cutting TCP proxy: forwards a loopback port to a target and drops connections on
//! demand, after a number of server→client bytes or at once.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::util::poll;

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    /// Server→client bytes still forwarded before the connection carrying them is cut.
    budget: Mutex<Option<u64>>,
    /// Bumped by `cut_now`: every open connection closes.
    cut: watch::Sender<u64>,
    connections: AtomicU64,
    active: AtomicU64,
    cuts: AtomicU64,
}

impl Shared {
    /// Of `n` bytes just read from the server: how many to forward, and whether to cut then.
    fn consume(&self, n: usize) -> (usize, bool) {
        let mut budget = self.budget.lock().expect("budget lock");
        match *budget {
            None => (n, false),
            Some(left) if (n as u64) < left => {
                *budget = Some(left - n as u64);
                (n, false)
            }
            Some(left) => {
                *budget = None;
                (left as usize, true)
            }
        }
    }
}

/// A TCP proxy on a free loopback port in front of `target`; see the crate documentation.
///
/// It runs on its own thread with its own tokio runtime. Drop stops it and closes every
/// connection.
#[derive(Debug)]
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards each connection to `target`.
    pub fn start(target: SocketAddr) -> CutProxy {
        let listener = StdListener::bind(("127.0.0.1", 0)).expect("bind the proxy's port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            budget: Mutex::new(None),
            cut: watch::Sender::new(0),
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("cut-proxy-{}", addr.port()))
            .spawn(move || runtime.block_on(accept_loop(listener, thread_shared, shutdown_rx)))
            .expect("spawn the proxy thread");
        CutProxy {
            addr,
            shared,
            shutdown,
            thread: Some(thread),
        }
    }

    /// The proxy's address, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Arms a one-shot cut: from now on, at most `n` more server→client bytes are forwarded
    /// (counted over all connections, open or new); the connection that carries the `n`-th
    /// byte forwards exactly up to it and is then closed on both sides. Afterwards the
    /// proxy forwards normally again. `n = 0` cuts at the next server→client byte.
    pub fn cut_after_bytes(&self, n: u64) {
        *self.shared.budget.lock().expect("budget lock") = Some(n);
    }

    /// Disarms a pending [`CutProxy::cut_after_bytes`].
    pub fn disarm(&self) {
        *self.shared.budget.lock().expect("budget lock") = None;
    }

    /// Closes every open connection on both sides, and waits (up to a second) until they
    /// are closed. New connections are forwarded as usual.
    pub fn cut_now(&self) {
        self.shared.cut.send_modify(|generation| *generation += 1);
        let _ = poll(Duration::from_secs(1), || {
            (self.shared.active.load(Ordering::SeqCst) == 0).then_some(())
        });
    }

    /// How many connections the proxy accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many connections are open now.
    pub fn active(&self) -> u64 {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// How many connections the proxy cut so far (by byte budget or `cut_now`).
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: StdListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.active.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&shared);
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    forward(client, &shared, shutdown).await;
                    shared.active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Forwards one connection both ways until a side closes, a cut, or shutdown.
async fn forward(mut client: TcpStream, shared: &Shared, mut shutdown: watch::Receiver<bool>) {
    let mut cut = shared.cut.subscribe();
    cut.mark_unchanged();
    let Ok(mut server) = TcpStream::connect(shared.target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_r, mut client_w) = client.split();
    let (mut server_r, mut server_w) = server.split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client_r.read(&mut up) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => if server_w.write_all(&up[..n]).await.is_err() { break },
            },
            read = server_r.read(&mut down) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let (take, cut_here) = shared.consume(n);
                    if take > 0 && client_w.write_all(&down[..take]).await.is_err() {
                        break;
                    }
                    if cut_here {
                        let _ = client_w.flush().await;
                        shared.cuts.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            },
            _ = cut.changed() => {
                shared.cuts.fetch_add(1, Ordering::SeqCst);
                break;
            }
            _ = shutdown.changed() => break,
        }
    }
    // Dropping both streams closes both sides.
}
