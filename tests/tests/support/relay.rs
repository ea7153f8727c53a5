//! A fault-injecting relay for the tests: what `netem` would do, were it in this kernel.
//! TCP: every piece of data read is held `delay ± jitter` before it is written on, in
//! order (a byte stream cannot be reordered; jitter shows as uneven delay). UDP: each
//! datagram is held on its own, so jitter reorders them as on a real network.

use rand::Rng;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Delay {
    pub base: Duration,
    pub jitter: Duration,
}

impl Delay {
    fn draw(&self) -> Duration {
        let j = self.jitter.as_micros() as i64;
        let off = if j == 0 {
            0
        } else {
            rand::thread_rng().gen_range(-j..=j)
        };
        Duration::from_micros((self.base.as_micros() as i64 + off).max(0) as u64)
    }
}

pub struct Relay {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays TCP connections from `listen` to `upstream`, each direction delayed.
pub async fn tcp(listen: SocketAddr, upstream: SocketAddr, delay: Delay) -> Relay {
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::join!(pipe(dr, uw, delay), pipe(ur, dw, delay));
            });
        }
    });
    Relay { addr, task }
}

/// One direction: read, stamp with a release time (never before the previous one: order
/// is kept), write when due. Memory is bounded by the channel (64 reads of 16 KiB).
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Delay,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader = async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    last = last.max(Instant::now() + delay.draw());
                    if tx.send((last, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if w.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Relays UDP datagrams between clients at `listen` and `upstream`: one upstream socket per
/// client address, each datagram delayed on its own (so reordered by the jitter).
pub async fn udp(listen: SocketAddr, upstream: SocketAddr, delay: Delay) -> Relay {
    let front = std::sync::Arc::new(UdpSocket::bind(listen).await.unwrap());
    let addr = front.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut clients: std::collections::HashMap<SocketAddr, std::sync::Arc<UdpSocket>> =
            Default::default();
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = front.recv_from(&mut buf).await {
            let back = match clients.get(&from) {
                Some(s) => s.clone(),
                None => {
                    let s = std::sync::Arc::new(UdpSocket::bind((listen.ip(), 0)).await.unwrap());
                    let (s2, front2) = (s.clone(), front.clone());
                    // Answers from upstream go back to this client, delayed too.
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        while let Ok((n, _)) = s2.recv_from(&mut buf).await {
                            let (data, front3) = (buf[..n].to_vec(), front2.clone());
                            let d = delay.draw();
                            tokio::spawn(async move {
                                tokio::time::sleep(d).await;
                                let _ = front3.send_to(&data, from).await;
                            });
                        }
                    });
                    clients.insert(from, s.clone());
                    s
                }
            };
            let data = buf[..n].to_vec();
            let d = delay.draw();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = back.send_to(&data, upstream).await;
            });
        }
    });
    Relay { addr, task }
}
