#!/usr/bin/env python3
"""A small fsx: random writes, reads, truncates and extends on one file,
checked against an in-memory model after every operation.
usage: fsx.py FILE OPS [SEED]"""
import os, random, sys

path, ops = sys.argv[1], int(sys.argv[2])
rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
MAX = 1 << 20
model = bytearray()
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(ops):
    op = rnd.choice("wwwrrtx")
    if op == "w":
        off, n = rnd.randrange(MAX), rnd.randrange(1, 65536)
        data = os.urandom(n)
        assert os.pwrite(fd, data, off) == n
        if len(model) < off:
            model.extend(b"\0" * (off - len(model)))
        model[off:off + n] = data
    elif op == "r":
        off, n = rnd.randrange(MAX), rnd.randrange(1, 65536)
        got = os.pread(fd, n, off)
        want = bytes(model[off:off + n])
        if got != want:
            sys.exit("op %d: read %d@%d differs (got %d bytes, want %d)" % (i, n, off, len(got), len(want)))
    elif op == "t":
        size = rnd.randrange(MAX)
        os.ftruncate(fd, size)
        del model[size:]
        if len(model) < size:
            model.extend(b"\0" * (size - len(model)))
    else:
        if os.fstat(fd).st_size != len(model):
            sys.exit("op %d: size %d, want %d" % (i, os.fstat(fd).st_size, len(model)))
os.close(fd)
with open(path, "rb") as f:
    if f.read() != bytes(model):
        sys.exit("final contents differ")
print("fsx: %d ops, no mismatch" % ops)
