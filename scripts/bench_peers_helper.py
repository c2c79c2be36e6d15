#!/usr/bin/env python3
"""Helpers for scripts/bench-peers.sh (python3 + boto3). Each prints one line of name=value
pairs. The S3 client is boto3 with path-style addressing; credentials from the environment.

  setup          bucket, the big object (and its source file), and the directories of small
                 objects, uploaded with many requests in flight (several processes)
  write          sequential write of a file through a mount, timed until S3 shows the object
  creates        N files of 4 KiB written and closed one after another, timed until S3 lists
                 them all
  direct-puts    the same N small objects with boto3, T in flight
  direct-list    ListObjectsV2 of one prefix (one page after another)
  direct-walk    ListObjectsV2 with delimiter of a tree of prefixes, T listings in flight
  random         random preads through a mount (bench_read_helper.py's), checked
  reqdiff        S3 requests between two snapshots of SeaweedFS' metrics
  delete         deletes every object under a prefix
"""
import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_read_helper import MIB, client, make_source, random_reads  # noqa: E402

SMALL = b"s" * 4096


def _put_range(args):
    endpoint, bucket, keys, body, threads = args
    s3 = client(endpoint, threads)
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body), keys))
    return len(keys)


def put_many(endpoint, bucket, keys, body, procs=4, threads=32):
    """Uploads `keys` (all with `body`) from `procs` processes of `threads` threads each."""
    chunks = [keys[i::procs] for i in range(procs)]
    with mp.get_context("fork").Pool(procs) as pool:
        return sum(pool.map(_put_range, [(endpoint, bucket, c, body, threads) for c in chunks]))


def count_prefix(s3, bucket, prefix):
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += page.get("KeyCount", 0)
    return n


def setup(a):
    from boto3.s3.transfer import TransferConfig

    s3 = client(a.endpoint)
    try:
        s3.create_bucket(Bucket=a.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    out = []
    t = time.time()
    make_source(a.src, a.big_mib * MIB)
    cfg = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=4)
    s3.upload_file(a.src, a.bucket, a.big_key, Config=cfg)
    out.append(f"big={a.big_mib}MiB/{time.time() - t:.1f}s")
    sets = [("ls", [f"{a.ls_prefix}f{i:06d}" for i in range(a.ls_files)]),
            ("tree", [f"{a.tree_prefix}d{d:03d}/f{f:03d}" for d in range(a.tree_dirs)
                      for f in range(a.tree_files)]),
            ("bigdir", [f"{a.bigdir_prefix}f{i:06d}" for i in range(a.bigdir_files)])]
    for name, keys in sets:
        if not keys:
            continue
        t = time.time()
        n = put_many(a.endpoint, a.bucket, keys, SMALL[:a.small_size], a.procs, a.threads)
        secs = time.time() - t
        out.append(f"{name}={n}/{secs:.1f}s({n / secs:.0f}/s)")
    print("setup " + " ".join(out))


def wait_visible(s3, bucket, key, size, timeout):
    """Seconds until HEAD shows `key` with `size` bytes (0 when it already does)."""
    t = time.perf_counter()
    while True:
        try:
            if s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == size:
                return time.perf_counter() - t
        except s3.exceptions.ClientError:
            pass
        if time.perf_counter() - t > timeout:
            raise SystemExit(f"{key} not visible with {size} bytes after {timeout} s")
        time.sleep(0.05)


def write(a):
    s3 = client(a.endpoint)
    size = os.path.getsize(a.src)
    buf = bytearray(MIB)
    src = os.open(a.src, os.O_RDONLY)
    t = time.perf_counter()
    dst = os.open(a.dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    while True:
        n = os.readv(src, [buf])
        if not n:
            break
        os.write(dst, memoryview(buf)[:n])
    os.close(dst)
    closed = time.perf_counter() - t
    os.close(src)
    # Visible: the object is there with its full size. Checking costs a HEAD, which is not
    # counted when the object is already there at the end of close.
    waited = wait_visible(s3, a.bucket, a.key, size, a.timeout)
    secs = closed + waited
    print(f"secs={secs:.3f} close_secs={closed:.3f} wait_visible_secs={waited:.3f} "
          f"mib_per_s={size / MIB / secs:.1f}")


def creates(a):
    s3 = client(a.endpoint)
    os.makedirs(a.dir, exist_ok=True)
    t = time.perf_counter()
    for i in range(a.count):
        fd = os.open(os.path.join(a.dir, f"f{i:05d}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, SMALL)
        os.close(fd)
    closed = time.perf_counter() - t
    # As for write: the listing that finds them all at once is not counted.
    t2 = time.perf_counter()
    waited = 0.0
    while (n := count_prefix(s3, a.bucket, a.prefix)) < a.count:
        if time.perf_counter() - t2 > a.timeout:
            raise SystemExit(f"only {n} of {a.count} objects listed after {a.timeout} s")
        time.sleep(0.1)
        waited = time.perf_counter() - t2
    secs = closed + waited
    print(f"secs={secs:.3f} close_secs={closed:.3f} wait_visible_secs={waited:.3f} "
          f"files_per_s={a.count / secs:.1f}")


def direct_puts(a):
    s3 = client(a.endpoint, a.threads)
    keys = [f"{a.prefix}f{i:05d}" for i in range(a.count)]
    s3.head_bucket(Bucket=a.bucket)  # connection and credentials set up before the clock
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(a.threads) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=a.bucket, Key=k, Body=SMALL), keys))
    secs = time.perf_counter() - t
    print(f"secs={secs:.3f} files_per_s={a.count / secs:.1f} in_flight={a.threads}")


def direct_list(a):
    s3 = client(a.endpoint)
    s3.head_bucket(Bucket=a.bucket)
    t = time.perf_counter()
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix,
                                                             Delimiter="/"):
        n += len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
    secs = time.perf_counter() - t
    print(f"secs={secs:.3f} entries={n} entries_per_s={n / secs:.1f}")


def direct_walk(a):
    s3 = client(a.endpoint, a.threads)
    s3.head_bucket(Bucket=a.bucket)

    def one(prefix):
        n, subs = 0, []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=prefix,
                                                                 Delimiter="/"):
            n += len(page.get("Contents", []))
            subs += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return n + len(subs), subs

    t = time.perf_counter()
    total = 1  # the top directory itself, as find prints it
    with cf.ThreadPoolExecutor(a.threads) as pool:
        pending = {pool.submit(one, a.prefix)}
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                n, subs = f.result()
                total += n
                pending |= {pool.submit(one, s) for s in subs}
    secs = time.perf_counter() - t
    print(f"secs={secs:.3f} entries={total} entries_per_s={total / secs:.1f} in_flight={a.threads}")


def metrics(path):
    counts, sent, recv = {}, 0.0, 0.0
    for line in open(path):
        m = re.match(r'SeaweedFS_s3_request_total\{bucket="([^"]*)",code="(\d+)",type="(\w+)"\} (\S+)', line)
        if m and m.group(1):
            kind = m.group(3) if m.group(3) != "GET" else ("GET" if m.group(2) == "206" else "HEAD/GET")
            counts[kind] = counts.get(kind, 0) + float(m.group(4))
        m = re.match(r'SeaweedFS_s3_bucket_traffic_(sent|received)_bytes_total\{[^}]*\} (\S+)', line)
        if m:
            if m.group(1) == "sent":
                sent += float(m.group(2))
            else:
                recv += float(m.group(2))
    return counts, sent, recv


def reqdiff(a):
    c0, s0, r0 = metrics(a.before)
    c1, s1, r1 = metrics(a.after)
    d = {k: int(c1.get(k, 0) - c0.get(k, 0)) for k in set(c0) | set(c1)}
    d = {k: v for k, v in sorted(d.items()) if v}
    total = sum(d.values())
    parts = " ".join(f"{k}={v}" for k, v in d.items())
    print(f"requests={total} {parts} sent_mib={(s1 - s0) / MIB:.0f} received_mib={(r1 - r0) / MIB:.0f}")


def delete(a):
    s3 = client(a.endpoint, 32)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=a.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                   "Quiet": True})
    print(f"deleted={len(keys)}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    def cmd(name, fn, required=(), **defaults):
        """A subcommand: --endpoint, --bucket, the `required` options, and one option of the
        default's type for each default (big_mib=1024 is --big-mib, an int)."""
        p = sub.add_parser(name)
        p.add_argument("--endpoint")
        p.add_argument("--bucket")
        for r in required:
            p.add_argument(f"--{r}", required=True)
        for k, v in defaults.items():
            p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
        p.set_defaults(fn=fn)

    cmd("setup", setup, ["src"], big_key="big", big_mib=1024, ls_prefix="ls/", ls_files=10000,
        tree_prefix="tree/", tree_dirs=100, tree_files=100, bigdir_prefix="bigdir/",
        bigdir_files=0, small_size=4096, procs=4, threads=32)
    cmd("write", write, ["src", "dst", "key"], timeout=120.0)
    cmd("creates", creates, ["dir", "prefix"], count=1000, timeout=120.0)
    cmd("direct-puts", direct_puts, ["prefix"], count=1000, threads=1)
    cmd("direct-list", direct_list, ["prefix"])
    cmd("direct-walk", direct_walk, ["prefix"], threads=1)
    cmd("random", random_reads, ["file", "src"], count=2000, size=4096, seed=1)
    cmd("reqdiff", reqdiff, ["before", "after"])
    cmd("delete", delete, ["prefix"])
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
