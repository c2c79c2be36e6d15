#!/usr/bin/env python3
"""Helpers for scripts/bench-read.sh (python3 + boto3).

  setup    create the bucket, a big object and a directory of many small objects
  random   timed random preads of one file (through the mount), checked against the source
  reqdiff  S3 requests the server saw between two snapshots (counts by kind, GET bytes)
"""
import argparse
import concurrent.futures as cf
import os
import random
import re
import statistics
import struct
import sys
import time

MIB = 1 << 20


def client(endpoint, threads=32):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=threads,
                      retries={"max_attempts": 5, "mode": "standard"}),
    )


def make_source(path, size):
    """Writes `size` bytes to `path`: 64 MiB of seeded random bytes repeated, with every 4 KiB
    page starting with its own offset, so a page read from the wrong place never matches."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    pattern = random.Random(20261123).randbytes(64 * MIB)
    with open(path + ".tmp", "wb") as f:
        done = 0
        while done < size:
            chunk = bytearray(pattern[: min(len(pattern), size - done)])
            for off in range(0, len(chunk) - 7, 4096):
                struct.pack_into("<Q", chunk, off, done + off)
            f.write(chunk)
            done += len(chunk)
    os.replace(path + ".tmp", path)


def setup(a):
    from boto3.s3.transfer import TransferConfig

    s3 = client(a.endpoint, a.threads)
    t = time.time()
    s3.create_bucket(Bucket=a.bucket)
    make_source(a.src, a.big_mib * MIB)
    t_gen = time.time() - t
    t = time.time()
    cfg = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=4)
    s3.upload_file(a.src, a.bucket, a.big_key, Config=cfg)
    t_big = time.time() - t
    t = time.time()
    body = b"small object for ls -l\n"
    dir_bucket = a.dir_bucket or a.bucket
    if dir_bucket != a.bucket:
        s3.create_bucket(Bucket=dir_bucket)
    prefix = f"{a.dir}/" if a.dir else ""

    def put(i):
        s3.put_object(Bucket=dir_bucket, Key=f"{prefix}f{i:06d}", Body=body)

    with cf.ThreadPoolExecutor(a.threads) as pool:
        for _ in pool.map(put, range(a.nfiles)):
            pass
    t_many = time.time() - t
    print(f"setup: source {t_gen:.1f} s, {a.big_mib} MiB object {t_big:.1f} s "
          f"({a.big_mib / max(t_big, 1e-9):.0f} MiB/s), {a.nfiles} small objects {t_many:.1f} s "
          f"({a.nfiles / max(t_many, 1e-9):.0f}/s)")


def random_reads(a):
    size = os.path.getsize(a.src)
    slots = size // a.size
    rng = random.Random(a.seed)
    offsets = [rng.randrange(slots) * a.size for _ in range(a.count)]
    fd = os.open(a.file, os.O_RDONLY)
    src = os.open(a.src, os.O_RDONLY)
    lat = []
    bad = 0
    t = time.perf_counter()
    try:
        for off in offsets:
            t1 = time.perf_counter()
            got = os.pread(fd, a.size, off)
            lat.append((time.perf_counter() - t1) * 1000)
            if got != os.pread(src, a.size, off):
                bad += 1
    finally:
        os.close(fd)
        os.close(src)
    secs = time.perf_counter() - t
    lat.sort()
    p = lambda q: lat[round((len(lat) - 1) * q)]
    distinct_mib = len({o // MIB for o in offsets})
    print(f"random_reads={a.count} read_size={a.size} secs={secs:.3f} reads_per_s={a.count / secs:.1f} "
          f"p50_ms={p(0.5):.3f} p99_ms={p(0.99):.3f} mean_ms={statistics.fmean(lat):.3f} "
          f"distinct_1mib_blocks={distinct_mib} mismatches={bad}")
    if bad:
        sys.exit(1)


# --- request accounting ----------------------------------------------------------------------

def metrics_counts(text):
    """SeaweedFS Prometheus text -> {(type, code): count}, bytes sent."""
    counts, sent = {}, 0.0
    for line in text.splitlines():
        m = re.match(r'SeaweedFS_s3_request_total\{bucket="[^"]*",code="(\d+)",type="(\w+)"\} (\S+)', line)
        if m:
            key = (m.group(2), m.group(1))
            counts[key] = counts.get(key, 0) + float(m.group(3))
        m = re.match(r'SeaweedFS_s3_bucket_traffic_sent_bytes_total\{[^}]*\} (\S+)', line)
        if m:
            sent += float(m.group(1))
    return counts, sent


def reqdiff(a):
    if a.kind == "seaweedfs":
        c0, s0 = metrics_counts(open(a.before).read())
        c1, s1 = metrics_counts(open(a.after).read())
        d = {k: int(c1.get(k, 0) - c0.get(k, 0)) for k in set(c0) | set(c1)}
        d = {k: v for k, v in d.items() if v}
        ranged = d.get(("GET", "206"), 0)
        # SeaweedFS counts HEAD (and whole-object GET) as type GET with code 200.
        head_or_get = d.get(("GET", "200"), 0)
        lists = sum(v for (t, _), v in d.items() if t == "LIST")
        errors = sum(v for (_, c), v in d.items() if not c.startswith("2"))
        sent = s1 - s0
        avg = sent / ranged / 1024 if ranged else 0
        print(f"ranged_gets={ranged} head_or_full_gets={head_or_get} lists={lists} not_2xx={errors} "
              f"bytes_sent={int(sent)} avg_ranged_get_kib={avg:.0f}")
        return
    # s3s-fs with RUST_LOG=s3s::service=debug: one "req: Request { method: M, uri: U, ... }" line each.
    with open(a.log, "rb") as f:
        f.seek(int(a.start))
        text = f.read(int(a.end) - int(a.start)).decode("utf-8", "replace")
    gets = heads = lists = other = 0
    sizes = []
    for line in text.splitlines():
        m = re.search(r"req: Request \{ method: (\w+), uri: (\S+),", line)
        if not m:
            continue
        method, uri = m.groups()
        if method == "HEAD":
            heads += 1
        elif method == "GET" and ("list-type" in uri or uri.count("/") < 2 or uri.endswith("/")):
            lists += 1
        elif method == "GET":
            gets += 1
            r = re.search(r'"range": "bytes=(\d+)-(\d+)"', line)
            if r:
                sizes.append(int(r.group(2)) - int(r.group(1)) + 1)
        else:
            other += 1
    errors = len(re.findall(r"resp: Response \{ status: [45]\d\d", text)) + text.count(" ERROR ")
    total = sum(sizes)
    avg = total / len(sizes) / 1024 if sizes else 0
    hist = {}
    for s in sizes:
        hist[s] = hist.get(s, 0) + 1
    common = ",".join(f"{n}x{s // 1024}KiB" for s, n in sorted(hist.items(), key=lambda x: -x[1])[:4])
    print(f"ranged_gets={gets} heads={heads} lists={lists} other={other} not_2xx={errors} "
          f"bytes_requested={total} avg_ranged_get_kib={avg:.0f} sizes={common or '-'}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--big-key", default="big")
    s.add_argument("--big-mib", type=int, default=1024)
    s.add_argument("--src", required=True)
    s.add_argument("--dir", default="many", help="prefix of the small objects ('' for the bucket root)")
    s.add_argument("--dir-bucket", help="bucket of the small objects (default --bucket)")
    s.add_argument("--nfiles", type=int, default=10000)
    s.add_argument("--threads", type=int, default=32)
    r = sub.add_parser("random")
    r.add_argument("--file", required=True)
    r.add_argument("--src", required=True)
    r.add_argument("--count", type=int, default=2000)
    r.add_argument("--size", type=int, default=4096)
    r.add_argument("--seed", type=int, default=1)
    d = sub.add_parser("reqdiff")
    d.add_argument("--kind", required=True, choices=["seaweedfs", "s3s-fs"])
    d.add_argument("--before")
    d.add_argument("--after")
    d.add_argument("--log")
    d.add_argument("--start")
    d.add_argument("--end")
    a = ap.parse_args()
    {"setup": setup, "random": random_reads, "reqdiff": reqdiff}[a.cmd](a)


if __name__ == "__main__":
    main()
