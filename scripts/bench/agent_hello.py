#!/usr/bin/env python3
"""Connect to a VM's agent channel socket, send tenki's HELLO and wait for
the agent's HELLO; print the milliseconds it took (the peer measurement of
`make bench`: what a plain `virsh create` of the same domain needs until
the agent answers).  Usage: agent_hello.py SOCKET [TIMEOUT_S]"""
import json, os, socket, struct, sys, time

MAGIC = 0x314B4E54
t0 = time.monotonic()
path = sys.argv[1]
deadline = t0 + float(sys.argv[2] if len(sys.argv) > 2 else 120)
while not os.path.exists(path):
    if time.monotonic() > deadline:
        sys.exit("no socket")
    time.sleep(0.005)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
hello = json.dumps({"proto": 1, "time_ns": time.time_ns(),
                    "hostname": "bench", "entropy": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}).encode()
s.sendall(struct.pack("<IIIBBH", MAGIC, len(hello), 0, 1, 0, 0) + hello)
buf = b""
s.settimeout(max(0.1, deadline - time.monotonic()))
while True:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("channel closed")
    buf += chunk
    i = buf.find(b"TNK1")
    if i >= 0 and len(buf) >= i + 16:
        ln, ch, typ = struct.unpack("<IIB", buf[i + 4:i + 13])
        if typ == 1 and len(buf) >= i + 16 + ln:
            print("%.0f" % ((time.monotonic() - t0) * 1000))
            break
