//! How busy the whole machine was during a round (`/proc/stat`, every process and the
//! kernel's own threads): what one chunk costs in CPU and in context switches (each
//! hand-off between threads is one or two), ours against nginx's, and whether a round was
//! bound by the two cores or by waiting.

/// Jiffies spent busy and idle (idle and I/O wait) by all CPUs since boot.
#[derive(Clone, Copy)]
pub struct Ticks {
    busy: u64,
    idle: u64,
    switches: u64,
}

pub fn now() -> Ticks {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let switches = stat
        .lines()
        .find_map(|l| l.strip_prefix("ctxt "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a ctxt line");
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .expect("a cpu line")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let idle = fields[3] + fields[4];
    let busy = fields.iter().take(8).sum::<u64>() - idle;
    Ticks {
        busy,
        idle,
        switches,
    }
}

/// Over one round: CPU milliseconds per chunk (all cores), the share of CPU left idle, and
/// context switches per chunk.
#[derive(Clone, Copy, Default)]
pub struct Round {
    pub ms_per_chunk: f64,
    pub idle: f64,
    pub switches_per_chunk: f64,
}

impl Round {
    pub fn since(before: Ticks, chunks: usize) -> Self {
        let after = now();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let busy = (after.busy - before.busy) as f64;
        let idle = (after.idle - before.idle) as f64;
        Self {
            ms_per_chunk: busy / hz * 1000.0 / chunks as f64,
            idle: if busy + idle > 0.0 {
                idle / (busy + idle)
            } else {
                0.0
            },
            switches_per_chunk: (after.switches - before.switches) as f64 / chunks as f64,
        }
    }
}
