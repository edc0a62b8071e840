//! Self-tests of the cutting proxy over plain TCP: byte-exact cuts, `cut_now`, and use from
//! inside a tokio runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use lockgate_test_peers::CutProxy;

/// A server that answers every connection's first byte with `n` bytes, then echoes.
fn blaster(n: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).is_err() {
                    return;
                }
                let _ = stream.write_all(&vec![b'x'; n]);
                let mut buf = [0u8; 1024];
                while let Ok(got) = stream.read(&mut buf) {
                    if got == 0 || stream.write_all(&buf[..got]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn connect(proxy: &CutProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads until EOF (or an error such as a reset) and returns how many bytes came.
fn read_to_end(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    while let Ok(got) = stream.read(&mut buf) {
        if got == 0 {
            break;
        }
        total += got;
    }
    total
}

#[test]
fn forwards_and_cuts_after_exactly_n_bytes() {
    let proxy = CutProxy::start(blaster(100_000));

    let mut plain = connect(&proxy);
    plain.write_all(b"go").unwrap();
    let mut got = vec![0u8; 100_001];
    plain.read_exact(&mut got).unwrap(); // 100 000 x and the echoed "o"
    assert_eq!(got[100_000], b'o');

    proxy.cut_after_bytes(12_345);
    let mut cut = connect(&proxy);
    cut.write_all(b"g").unwrap();
    assert_eq!(read_to_end(&mut cut), 12_345);
    assert_eq!(proxy.cuts(), 1);
    // The server side is closed too: the connection is gone from the proxy.
    assert!(wait_until(|| proxy.active() == 1), "only `plain` is left");

    // The budget counts from the moment it is armed, on open connections as well.
    proxy.cut_after_bytes(3);
    plain.write_all(b"abcdef").unwrap();
    assert_eq!(read_to_end(&mut plain), 3);
    assert_eq!(proxy.cuts(), 2);

    // Zero cuts at the next server byte.
    proxy.cut_after_bytes(0);
    let mut zero = connect(&proxy);
    zero.write_all(b"g").unwrap();
    assert_eq!(read_to_end(&mut zero), 0);
    assert_eq!(proxy.connections(), 3);
}

#[test]
fn cut_now_closes_open_connections() {
    let proxy = CutProxy::start(blaster(10));
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    for s in [&mut a, &mut b] {
        s.write_all(b"g").unwrap();
        let mut ten = [0u8; 10];
        s.read_exact(&mut ten).unwrap();
    }
    assert!(wait_until(|| proxy.active() == 2));
    proxy.cut_now();
    assert_eq!(proxy.active(), 0);
    assert_eq!(read_to_end(&mut a), 0);
    assert_eq!(read_to_end(&mut b), 0);
    assert_eq!(proxy.cuts(), 2);

    // New connections are forwarded.
    let mut c = connect(&proxy);
    c.write_all(b"g").unwrap();
    let mut ten = [0u8; 10];
    c.read_exact(&mut ten).unwrap();
}

#[tokio::test]
async fn usable_inside_a_tokio_runtime() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = CutProxy::start(blaster(1_000));
    proxy.cut_after_bytes(500);
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"g").await.unwrap();
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all).await;
    assert_eq!(all.len(), 500);
    drop(proxy); // stops its thread without blocking the runtime for long
}

fn wait_until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
