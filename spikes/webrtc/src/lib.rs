//! Shared pieces of the WebRTC data-channel spike: chunk framing, bounded reassembly,
//! acks, a tiny blocking HTTP signalling helper (WHIP-style: offer in, answer out),
//! and /proc probes (RSS, UDP sockets).

pub mod framing {
    //! Wire format on the data channel (binary messages, ordered + reliable channel).
    //!
    //! Client -> server, one chunk split into messages of at most [`MAX_MSG`] bytes:
    //! `chunk_id: u64 BE | seq: u16 BE | flags: u8 (bit 0 = last) | payload`.
    //!
    //! Server -> client, one ack per complete chunk:
    //! `chunk_id: u64 BE | total_len: u32 BE | status: u8 (0 = ok, 1 = corrupt)`.

    /// Largest data channel message we send (header included). 64 KiB is the default
    /// max-message-size of webrtc-rs and of most browsers.
    pub const MAX_MSG: usize = 64 * 1024;
    pub const HEADER_LEN: usize = 11;
    pub const MAX_PAYLOAD: usize = MAX_MSG - HEADER_LEN;
    pub const ACK_LEN: usize = 13;
    const FLAG_LAST: u8 = 1;

    /// Deterministic chunk contents, so the server can check every byte it reassembles.
    pub fn fill_byte(chunk_id: u64, i: usize) -> u8 {
        (chunk_id as usize).wrapping_mul(31).wrapping_add(i) as u8
    }

    pub fn chunk_payload(chunk_id: u64, size: usize) -> Vec<u8> {
        (0..size).map(|i| fill_byte(chunk_id, i)).collect()
    }

    /// Split one chunk into framed messages of at most `MAX_MSG` bytes.
    pub fn split_chunk(chunk_id: u64, data: &[u8]) -> Vec<Vec<u8>> {
        let parts: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(MAX_PAYLOAD).collect()
        };
        let n = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(seq, part)| {
                let mut m = Vec::with_capacity(HEADER_LEN + part.len());
                m.extend_from_slice(&chunk_id.to_be_bytes());
                m.extend_from_slice(&(seq as u16).to_be_bytes());
                m.push(if seq + 1 == n { FLAG_LAST } else { 0 });
                m.extend_from_slice(part);
                m
            })
            .collect()
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Ack {
        pub chunk_id: u64,
        pub total_len: u32,
        pub ok: bool,
    }

    impl Ack {
        pub fn encode(&self) -> [u8; ACK_LEN] {
            let mut b = [0u8; ACK_LEN];
            b[..8].copy_from_slice(&self.chunk_id.to_be_bytes());
            b[8..12].copy_from_slice(&self.total_len.to_be_bytes());
            b[12] = if self.ok { 0 } else { 1 };
            b
        }

        pub fn decode(b: &[u8]) -> Option<Ack> {
            if b.len() != ACK_LEN {
                return None;
            }
            Some(Ack {
                chunk_id: u64::from_be_bytes(b[..8].try_into().ok()?),
                total_len: u32::from_be_bytes(b[8..12].try_into().ok()?),
                ok: b[12] == 0,
            })
        }
    }

    /// Server-side reassembly of one peer's chunks. Bounded: at most one chunk in
    /// progress (the channel is ordered), at most `max_chunk` bytes.
    pub struct Reassembler {
        max_chunk: usize,
        cur: Option<(u64, u16, Vec<u8>)>,
    }

    impl Reassembler {
        pub fn new(max_chunk: usize) -> Self {
            Reassembler {
                max_chunk,
                cur: None,
            }
        }

        /// Feed one message. `Ok(Some(ack))` when a chunk is complete.
        /// `Err` is a protocol violation: the caller should drop the peer.
        pub fn push(&mut self, msg: &[u8]) -> Result<Option<Ack>, String> {
            if msg.len() < HEADER_LEN || msg.len() > MAX_MSG {
                return Err(format!("bad message length {}", msg.len()));
            }
            let chunk_id = u64::from_be_bytes(msg[..8].try_into().unwrap());
            let seq = u16::from_be_bytes(msg[8..10].try_into().unwrap());
            let last = msg[10] & FLAG_LAST != 0;
            let payload = &msg[HEADER_LEN..];

            match &mut self.cur {
                None if seq == 0 => {
                    let mut buf = Vec::with_capacity(payload.len().max(MAX_PAYLOAD));
                    buf.extend_from_slice(payload);
                    self.cur = Some((chunk_id, 1, buf));
                }
                Some((id, next, buf)) if *id == chunk_id && *next == seq => {
                    if buf.len() + payload.len() > self.max_chunk {
                        return Err(format!("chunk {chunk_id} exceeds {} bytes", self.max_chunk));
                    }
                    buf.extend_from_slice(payload);
                    *next = next.wrapping_add(1);
                }
                other => {
                    return Err(format!(
                        "out of sequence: got chunk {chunk_id} seq {seq}, in progress {:?}",
                        other.as_ref().map(|(i, n, _)| (*i, *n))
                    ))
                }
            }

            if !last {
                return Ok(None);
            }
            let (id, _, buf) = self.cur.take().unwrap();
            let ok = buf.iter().enumerate().all(|(i, b)| *b == fill_byte(id, i));
            Ok(Some(Ack {
                chunk_id: id,
                total_len: buf.len() as u32,
                ok,
            }))
        }
    }
}

pub mod http {
    //! Minimal blocking HTTP/1.1 (Connection: close) for signalling and stats. Enough for
    //! a spike; production uses the server's real HTTPS stack (WHIP-style endpoint).
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream, ToSocketAddrs};
    use std::sync::Arc;
    use std::time::Duration;

    pub struct Request {
        pub method: String,
        pub path: String,
        pub body: Vec<u8>,
    }

    pub type Handler = Arc<dyn Fn(Request) -> (u16, String) + Send + Sync>;

    /// Serve forever, one thread per connection.
    pub fn serve(listener: TcpListener, handler: Handler) {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            std::thread::spawn(move || {
                if let Err(e) = handle(stream, &handler) {
                    eprintln!("http: {e}");
                }
            });
        }
    }

    fn handle(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let mut it = line.split_whitespace();
        let method = it.next().unwrap_or("").to_string();
        let path = it.next().unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len.min(1 << 20)];
        r.read_exact(&mut body)?;
        let (status, resp) = handler(Request { method, path, body });
        let mut w = stream;
        write!(
            w,
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
            resp.len()
        )?;
        w.flush()
    }

    /// `POST`/`GET` to `host:port` + path, returning the body of a 2xx answer.
    pub fn request(addr: &str, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
        let sa = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("bad address {addr}"))?;
        let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("bad http response"))?;
        let status: u16 = head.split_whitespace().nth(1).unwrap_or("0").parse()?;
        if !(200..300).contains(&status) {
            anyhow::bail!("http {status}: {body}");
        }
        Ok(body.to_string())
    }
}

pub mod procfs {
    //! Probes of this process through /proc (Linux only).
    use std::collections::HashSet;

    /// Resident set size in KiB (VmRSS).
    pub fn vm_rss_kb() -> u64 {
        status_field("VmRSS:")
    }

    /// Peak resident set size in KiB (VmHWM).
    pub fn vm_hwm_kb() -> u64 {
        status_field("VmHWM:")
    }

    pub fn threads() -> u64 {
        status_field("Threads:")
    }

    fn status_field(name: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// (UDP sockets owned by this process, distinct local UDP ports among them,
    /// datagrams the kernel dropped on them: the `drops` column of /proc/net/udp).
    pub fn udp_sockets() -> (usize, usize, u64) {
        let mut inodes = HashSet::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for e in dir.flatten() {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let t = t.to_string_lossy().to_string();
                    if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                        inodes.insert(i.to_string());
                    }
                }
            }
        }
        let mut count = 0;
        let mut drops = 0;
        let mut ports = HashSet::new();
        for f in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
            for line in std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .skip(1)
            {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() > 9 && inodes.contains(cols[9]) {
                    count += 1;
                    drops += cols.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
                    if let Some(p) = cols[1].rsplit(':').next() {
                        ports.insert(p.to_string());
                    }
                }
            }
        }
        (count, ports.len(), drops)
    }

    /// User + system CPU seconds of this process (assumes 100 ticks/s, the Linux default).
    pub fn cpu_seconds() -> f64 {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the ")" that closes the command name; utime, stime are 14, 15.
        let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (tick(11) + tick(12)) / 100.0
    }

    /// One `key=value` line describing the process, served at GET /stats.
    pub fn summary() -> String {
        let (socks, ports, drops) = udp_sockets();
        format!(
            "rss_kb={} hwm_kb={} threads={} cpu_s={:.2} udp_sockets={socks} udp_ports={ports} udp_drops={drops}",
            vm_rss_kb(),
            vm_hwm_kb(),
            threads(),
            cpu_seconds()
        )
    }
}

pub mod stats {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    /// Server-side counters, shared by both servers and served at GET /stats.
    #[derive(Default)]
    pub struct ServerStats {
        pub offers: AtomicU64,
        pub connected: AtomicU64,
        pub channels_open: AtomicU64,
        pub messages: AtomicU64,
        pub bytes: AtomicU64,
        pub chunks_ok: AtomicU64,
        pub chunks_corrupt: AtomicU64,
        pub protocol_errors: AtomicU64,
        pub disconnected: AtomicU64,
        pub send_errors: AtomicU64,
        pub unmatched_datagrams: AtomicU64,
    }

    impl ServerStats {
        pub fn line(&self) -> String {
            let g = |a: &AtomicU64| a.load(Relaxed);
            format!(
                "offers={} connected={} channels_open={} messages={} bytes={} chunks_ok={} chunks_corrupt={} protocol_errors={} disconnected={} send_errors={} unmatched_datagrams={} {}",
                g(&self.offers),
                g(&self.connected),
                g(&self.channels_open),
                g(&self.messages),
                g(&self.bytes),
                g(&self.chunks_ok),
                g(&self.chunks_corrupt),
                g(&self.protocol_errors),
                g(&self.disconnected),
                g(&self.send_errors),
                g(&self.unmatched_datagrams),
                crate::procfs::summary()
            )
        }
    }

    /// Nearest-rank percentile of a sorted slice.
    pub fn percentile(sorted: &[f64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// Kernel-wide UDP counters (InErrors, RcvbufErrors, SndbufErrors) from /proc/net/snmp.
    pub fn udp_kernel_errors() -> (u64, u64, u64) {
        let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
        if lines.len() < 2 {
            return (0, 0, 0);
        }
        let keys: Vec<&str> = lines[0].split_whitespace().collect();
        let vals: Vec<&str> = lines[1].split_whitespace().collect();
        let get = |k: &str| {
            keys.iter()
                .position(|x| *x == k)
                .and_then(|i| vals.get(i)?.parse().ok())
                .unwrap_or(0)
        };
        (get("InErrors"), get("RcvbufErrors"), get("SndbufErrors"))
    }
}

/// Parse `--key value` / `--flag` arguments into a lookup.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        let k = format!("--{key}");
        self.0
            .iter()
            .position(|a| *a == k)
            .and_then(|i| self.0.get(i + 1))
            .map(|s| s.as_str())
    }

    pub fn val<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub fn flag(&self, key: &str) -> bool {
        let k = format!("--{key}");
        self.0.contains(&k)
    }
}

/// A UDP socket with large kernel buffers (bursts of 200 peers overflow the 208 KiB
/// default and every drop costs an SCTP retransmission).
pub fn udp_socket(addr: std::net::SocketAddr, buf: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if buf > 0 {
        let _ = s.set_recv_buffer_size(buf);
        let _ = s.set_send_buffer_size(buf);
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::framing::*;

    #[test]
    fn split_and_reassemble() {
        for size in [0, 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 150_000] {
            let data = chunk_payload(7, size);
            let msgs = split_chunk(7, &data);
            assert!(msgs.iter().all(|m| m.len() <= MAX_MSG));
            let mut r = Reassembler::new(1 << 20);
            let mut acks = vec![];
            for m in &msgs {
                if let Some(a) = r.push(m).unwrap() {
                    acks.push(a);
                }
            }
            assert_eq!(
                acks,
                vec![Ack {
                    chunk_id: 7,
                    total_len: size as u32,
                    ok: true
                }]
            );
        }
    }

    #[test]
    fn bounded_and_ordered() {
        let msgs = split_chunk(1, &chunk_payload(1, 200_000));
        let mut r = Reassembler::new(100_000);
        assert!(r.push(&msgs[0]).unwrap().is_none());
        assert!(r.push(&msgs[1]).is_err(), "exceeds bound");
        let mut r = Reassembler::new(1 << 20);
        assert!(r.push(&msgs[1]).is_err(), "starts mid-chunk");
    }
}
