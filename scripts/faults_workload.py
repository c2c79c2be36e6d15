#!/usr/bin/env python3
"""The workload of scripts/faults.sh: file work through a mount whose S3 misbehaves, every
result checked against a model, until a deadline. Failures are counted, not fatal.

  faults_workload.py MOUNTPOINT SECONDS

Each round writes a file (0 B to 20 MiB: one PutObject up to 8 MiB, multipart above) and reads
it back, stats and lists it; some rounds rename a file to another directory, rename a whole
directory, append to a file (a small one, or a multipart one whose prefix S3 copies), remove
an emptied directory, and every round reads a random range of a large read-only object
(big.bin, made from the seed in big.seed). Files beyond the 30 newest are deleted. At the end
every file left is read back once more.

Two counts matter and must be 0: failed operations (an error where none was due) and wrong
bytes (a read that returned other bytes than were written, or a size that differs). A line
every 30 s says how far it got; the last line is JSON:
{"ops": N, "failed": F, "wrong": W, "by_op": {...}, "first_errors": [...],
 "files": {"DIR/NAME": "md5 hex", ...}, "dirs": [...]} (what S3 should hold at the end).
"""
import errno
import hashlib
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak_workload import body  # noqa: E402  (the same deterministic contents)

# Sizes written, and how often: mostly small files, now and then a multipart one.
SIZES = [0, 1, 4096, 100_000, 1 << 20, 0, 4096, 5 << 20, 100_000, 9 << 20, 1, 20 << 20]
LIVE_FILES = 30
# FAULTS_TRACE=PATH: every operation and its outcome, one a line, for when something differs.
TRACE = open(os.environ["FAULTS_TRACE"], "a", buffering=1) if os.environ.get("FAULTS_TRACE") else None


class Run:
    def __init__(self, mnt: str) -> None:
        self.mnt = mnt
        self.ops = 0
        self.failed = 0
        self.wrong = 0
        self.by_op: dict[str, int] = {}
        self.first_errors: list[str] = []
        self.files: dict[str, bytes] = {}  # relative path -> contents
        self.dirs: set[str] = set()
        self.order: list[str] = []  # files, oldest first

    def path(self, rel: str) -> str:
        return os.path.join(self.mnt, rel)

    def note(self, what: str, text: str) -> None:
        if len(self.first_errors) < 20:
            self.first_errors.append(f"{time.strftime('%H:%M:%S')} {what}: {text}")

    def op(self, what: str, fn, on: str = ""):
        """Runs one operation on path `on`; returns its result (True for one that returns
        nothing), or None when it failed."""
        self.ops += 1
        self.by_op[what] = self.by_op.get(what, 0) + 1
        try:
            out = fn()
        except OSError as e:
            self.failed += 1
            code = errno.errorcode.get(e.errno or 0, "")
            self.note(f"{what} {on}", f"{code} {e}")
            self.trace(f"{what} {on}: {code} {e}")
            return None
        self.trace(f"{what} {on}: ok")
        return True if out is None else out

    def trace(self, line: str) -> None:
        if TRACE is not None:
            TRACE.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def resync(self, *rels: str) -> None:
        """After a failed change, takes what the mount shows for `rels` as the model, so one
        failure is counted once and does not make later checks fail too."""
        for rel in rels:
            try:
                data = self.read(rel)
            except OSError:
                self.files.pop(rel, None)
                if rel in self.order:
                    self.order.remove(rel)
                continue
            if rel not in self.files:
                self.order.append(rel)
            self.files[rel] = data

    def check(self, what: str, got: bytes | None, want: bytes, on: str = "") -> None:
        if got is not None and got != want:
            self.wrong += 1
            self.note(f"{what} {on}", f"{len(got)} bytes read, {len(want)} expected"
                            f"{'' if len(got) != len(want) else ' (contents differ)'}")

    def read(self, rel: str) -> bytes:
        with open(self.path(rel), "rb") as f:
            return f.read()

    def write(self, rel: str, data: bytes) -> bool:
        def go():
            with open(self.path(rel), "wb") as f:
                f.write(data)
            return True
        if self.op("write", go, rel):
            if rel not in self.files:
                self.order.append(rel)
            self.files[rel] = data
            return True
        self.resync(rel)
        return False

    def mkdir(self, d: str) -> None:
        def go():
            os.mkdir(self.path(d))
            return True
        if d not in self.dirs:
            if self.op("mkdir", go, d):
                self.dirs.add(d)
            else:
                self.resync_dir(d)

    def rename_file(self, rel: str, to: str) -> None:
        if self.op("rename file", lambda: os.rename(self.path(rel), self.path(to)), f"{rel} {to}") is None:
            self.resync(rel, to)
            return
        self.files[to] = self.files.pop(rel)
        self.order[self.order.index(rel)] = to
        self.check("read renamed", self.op("read renamed", lambda: self.read(to), to), self.files[to], to)

    def rename_dir(self, d: str, to: str) -> None:
        if self.op("rename dir", lambda: os.rename(self.path(d), self.path(to)), f"{d} {to}") is None:
            self.resync_dir(d)
            self.resync_dir(to)
            return
        self.dirs.discard(d)
        self.dirs.add(to)
        moved = {rel: f"{to}/{rel[len(d) + 1:]}" for rel in self.files if rel.startswith(d + "/")}
        for old, new in moved.items():
            self.files[new] = self.files.pop(old)
            self.order[self.order.index(old)] = new
        for new in moved.values():
            self.check("read moved", self.op("read moved", lambda: self.read(new), new), self.files[new], new)

    def resync_dir(self, d: str) -> None:
        """resync() for a directory and everything the mount shows under it."""
        try:
            names = [f"{d}/{n}" for n in os.listdir(self.path(d))]
            self.dirs.add(d)
        except OSError:
            names = []
            self.dirs.discard(d)
        self.resync(*sorted({rel for rel in self.files if rel.startswith(d + "/")} | set(names)))

    def append(self, rel: str, more: bytes) -> None:
        def go():
            with open(self.path(rel), "ab") as f:
                f.write(more)
            return True
        if self.op("append", go, rel) is None:
            self.resync(rel)
            return
        self.files[rel] += more
        self.check("read appended", self.op("read appended", lambda: self.read(rel), rel), self.files[rel], rel)

    def unlink(self, rel: str) -> None:
        if self.op("unlink", lambda: os.unlink(self.path(rel)), rel) is None:
            self.resync(rel)
            if rel in self.files:  # still there: stop trying, it stays in the model
                self.order.remove(rel)
            return
        del self.files[rel]
        self.order.remove(rel)
        d = rel.split("/")[0]
        if d.endswith(".moved") and not any(f.startswith(d + "/") for f in self.files):
            if self.op("rmdir", lambda: os.rmdir(self.path(d)), d) is not None:
                self.dirs.discard(d)
            else:
                self.resync_dir(d)


def main() -> int:
    mnt, seconds = sys.argv[1], float(sys.argv[2])
    big = os.path.join(mnt, "big.bin")
    big_size = os.stat(big).st_size
    big_data = body(int(open(os.path.join(mnt, "big.seed")).read()), big_size)
    r = Run(mnt)
    rng = random.Random(11)
    deadline = time.monotonic() + seconds
    next_report = time.monotonic() + 30
    i = 0
    while time.monotonic() < deadline:
        d = f"d{i % 6}"
        r.mkdir(d)
        rel = f"{d}/f{i}.bin"
        size = SIZES[i % len(SIZES)]
        data = body(i, size)
        if r.write(rel, data):
            r.check("read back", r.op("read back", lambda: r.read(rel), rel), data, rel)
            st = r.op("stat", lambda: os.stat(r.path(rel)), rel)
            if st is not None and st.st_size != size:
                r.wrong += 1
                r.note(f"stat {rel}", f"size {st.st_size}, {size} expected")
            names = r.op("list", lambda: os.listdir(r.path(d)), d)
            if names is not None and os.path.basename(rel) not in names:
                r.failed += 1
                r.note(f"list {d}", f"{rel} not listed")
            if i % 5 == 0:
                to = f"d{(i + 1) % 6}/f{i}.renamed"
                r.mkdir(to.split("/")[0])
                r.rename_file(rel, to)
        if i % 4 == 0 and r.order:
            target = rng.choice(r.order)
            r.append(target, body(10_000 + i, rng.choice([1, 100, 70_000])))
        if i % 9 == 8:
            d = f"d{rng.randrange(6)}"
            if d in r.dirs:
                r.rename_dir(d, f"{d}.{i}.moved")
        off = rng.randrange(0, big_size - 65536)

        def random_read():
            with open(big, "rb") as f:
                f.seek(off)
                return f.read(65536)
        r.check("random read", r.op("random read", random_read, f"big.bin@{off}"),
                big_data[off:off + 65536], f"big.bin@{off}")
        while len(r.order) > LIVE_FILES:
            r.unlink(r.order[0])
        i += 1
        if time.monotonic() >= next_report:
            print(f"faults: {i} rounds, {r.ops} operations, {r.failed} failed, {r.wrong} wrong",
                  file=sys.stderr, flush=True)
            next_report += 30
    for rel in list(r.files):
        r.check("final read", r.op("final read", lambda: r.read(rel), rel), r.files[rel], rel)
    print(json.dumps({
        "rounds": i, "ops": r.ops, "failed": r.failed, "wrong": r.wrong, "by_op": r.by_op,
        "first_errors": r.first_errors,
        "files": {rel: hashlib.md5(data).hexdigest() for rel, data in r.files.items()},
        "dirs": sorted(r.dirs),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
