#!/usr/bin/env python3
"""Write a tar archive of COUNT small files for the `tar x` figure of
`make bench`: 100 files a directory, 100 B to 4 KiB of random bytes each
(seeded, so every run extracts the same tree), owned by root.
Usage: mktree.py COUNT OUT.tar"""
import io, random, sys, tarfile

count, out = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(20261123)
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
    for d in range((count + 99) // 100):
        ti = tarfile.TarInfo("d%03d" % d)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1795000000
        tar.addfile(ti)
        for f in range(min(100, count - d * 100)):
            data = rnd.randbytes(rnd.randint(100, 4096))
            ti = tarfile.TarInfo("d%03d/f%03d.txt" % (d, f))
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1795000000
            tar.addfile(ti, io.BytesIO(data))
