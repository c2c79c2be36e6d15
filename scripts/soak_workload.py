#!/usr/bin/env python3
"""The workload of scripts/soak.sh: ordinary file work through a mount, round after round,
until a deadline, every result checked. Errors are counted, not fatal.

  soak_workload.py MOUNTPOINT SECONDS

Each round writes a file (sizes from empty to a 9 MiB multipart upload), reads it back,
stats it, lists its directory, sometimes renames it or appends to a log file, reads a random
range of a large read-only object, and deletes files older than 40 rounds, so the tree stays
small. A line every 30 s says how far it got; the last line is JSON:
{"rounds": N, "errors": M, "first_errors": [...]}.
"""
import errno
import json
import os
import random
import sys
import time

SIZES = [0, 1, 4096, 100_000, 1 << 20]
MULTIPART = 9 << 20  # one round in 30


def body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def main() -> int:
    mnt, seconds = sys.argv[1], float(sys.argv[2])
    big = os.path.join(mnt, "big.bin")
    big_size = os.stat(big).st_size
    big_seed = int(open(os.path.join(mnt, "big.seed")).read())
    big_data = body(big_seed, big_size)
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    next_report = time.monotonic() + 30
    rounds, errors, first_errors, live = 0, 0, [], []

    def fail(op: str, e: Exception) -> None:
        nonlocal errors
        errors += 1
        if len(first_errors) < 20:
            code = errno.errorcode.get(getattr(e, "errno", None) or 0, "")
            first_errors.append(f"round {rounds} {op}: {code} {e}")

    while time.monotonic() < deadline:
        i = rounds
        d = os.path.join(mnt, f"d{i % 8}")
        name = os.path.join(d, f"f{i}.bin")
        size = MULTIPART if i % 30 == 29 else SIZES[i % len(SIZES)]
        data = body(i, size)
        try:
            os.makedirs(d, exist_ok=True)
            with open(name, "wb") as f:
                f.write(data)
            with open(name, "rb") as f:
                if f.read() != data:
                    raise OSError(errno.EIO, "read back differs")
            if os.stat(name).st_size != size:
                raise OSError(errno.EIO, "size differs")
            if os.path.basename(name) not in os.listdir(d):
                raise OSError(errno.ENOENT, "not listed")
            if i % 5 == 0:
                renamed = name + ".renamed"
                os.rename(name, renamed)
                name = renamed
                with open(name, "rb") as f:
                    if f.read() != data:
                        raise OSError(errno.EIO, "renamed file differs")
            live.append(name)
        except OSError as e:
            fail("write/read", e)
        if i % 10 == 0:
            try:
                with open(os.path.join(mnt, "log.txt"), "a") as f:
                    f.write(f"round {i}\n")
            except OSError as e:
                fail("append", e)
        try:
            off = rng.randrange(0, big_size - 65536)
            with open(big, "rb") as f:
                f.seek(off)
                if f.read(65536) != big_data[off:off + 65536]:
                    raise OSError(errno.EIO, "big.bin range differs")
        except OSError as e:
            fail("random read", e)
        while len(live) > 40:
            try:
                os.unlink(live.pop(0))
            except OSError as e:
                fail("unlink", e)
        rounds += 1
        if time.monotonic() >= next_report:
            print(f"soak: {rounds} rounds, {errors} errors", file=sys.stderr, flush=True)
            next_report += 30
    print(json.dumps({"rounds": rounds, "errors": errors, "first_errors": first_errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
