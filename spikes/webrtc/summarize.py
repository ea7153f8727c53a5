#!/usr/bin/env python3
"""Medians over <dir>/<lib>-<kind>-<variant><n>.log (written by bench.sh).
Usage: ./summarize.py [results]   (variant: empty = plain run, e.g. rtt50-buf1m-, defaultbuf-)"""
import collections, glob, re, statistics, sys

def kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=([^\s]+)", line)}

runs = collections.defaultdict(list)
base = sys.argv[1] if len(sys.argv) > 1 else "results"
for path in sorted(glob.glob(f"{base}/*.log")):
    m = re.match(r".*/(str0m|webrtc)-(bulk|load)-(.+)\.log$", path)
    if not m or path.endswith(".server.log"):
        continue
    lib, kind, run = m.groups()
    variant = re.sub(r"-?\d+$", "", run) or "plain"
    text = open(path).read()
    res = next((kv(l) for l in text.splitlines() if l.startswith("RESULT")), None)
    srv = {n: kv(l) for l in text.splitlines()
           for n in ("idle", "connected", "after") if l.startswith(f"server {n}:")}
    conn = re.search(r"connect ms:\s+p50 ([\d.]+) p99 ([\d.]+)", text)
    kern = re.search(r"during run: \((\d+), (\d+), (\d+)\)", text)
    if not res or len(srv) < 3:
        print(f"{path}: incomplete")
        continue
    idle, con, aft = (int(srv[n]["rss_kb"]) for n in ("idle", "connected", "after"))
    peers = int(res["peers"])
    runs[(lib, kind, variant)].append({
        "secs": float(res["secs"]), "MB/s": float(res["mbps"]),
        "lat p50": float(res["lat_p50"]), "lat p99": float(res["lat_p99"]),
        "due p50": float(res["due_p50"]), "due p99": float(res["due_p99"]),
        "ok": int(res["ok"]), "sent": int(res["sent"]), "bad": int(res["bad"]),
        "errors": int(res["errors"]),
        "rss idle MB": idle / 1024, "rss conn MB": con / 1024, "rss after MB": aft / 1024,
        "KB/peer conn": (con - idle) / peers, "KB/peer after": (aft - idle) / peers,
        "hwm MB": int(srv["after"]["hwm_kb"]) / 1024,
        "cpu s": float(srv["after"].get("cpu_s", "nan")),
        "udp sockets": int(srv["after"]["udp_sockets"]),
        "udp ports": int(srv["after"]["udp_ports"]),
        "srv udp drops": int(srv["after"].get("udp_drops", "0")),
        "kernel RcvbufErrors": int(kern.group(2)) if kern else -1,
        "connect p50": float(conn.group(1)), "connect p99": float(conn.group(2)),
    })

for key in sorted(runs):
    rs = runs[key]
    print(f"\n== {' '.join(key)}: {len(rs)} runs (median [min..max])")
    for field in rs[0]:
        vals = [r[field] for r in rs]
        print(f"  {field:20} {statistics.median(vals):10.2f}   [{min(vals):.2f} .. {max(vals):.2f}]")
