// tenki-sandbox against a live tree (TENKI_MOUNT; tests/e2e/sdk-typescript.bats starts
// a private tenkid for it).  The seed's "demo" session serves every test;
// the other create example makes its own.  Run: node --test test/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { TenkiSandbox, CommandFailedError, SandboxError } from "../index.js";

const MOUNT = process.env.TENKI_MOUNT || "/tenki";
const haveTree = fs.existsSync(path.join(MOUNT, "version"));
const sandbox = new TenkiSandbox();
let session;

// `npm test` for the seed's examples: the image has no npm, so a stand-in
// goes on the guest's PATH.  It prints its first line, then waits for
// /home/tenki/.npm-go before printing the last and exiting: a first line
// read while it waits came live.
const NPM =
  '#!/bin/sh\necho "> test: first line"\nwhile [ ! -e /home/tenki/.npm-go ]; do sleep 0.1; done\necho "> test: last line"\n';
const jobStatus = (s) => fs.readFileSync(path.join(s.dir, "status"), "utf8").trim();

// GET a URL like curl does: names under .localhost are this host.
function httpGet(url) {
  const u = new URL(url);
  const host = u.hostname === "localhost" || u.hostname.endsWith(".localhost") ? "127.0.0.1" : u.hostname;
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port: u.port || 80, path: u.pathname + u.search, headers: { Host: u.host }, timeout: 10_000 }, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => (res.statusCode === 200 ? resolve(Buffer.concat(parts).toString()) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

const sha = (b) => createHash("sha256").update(b).digest("hex");

function keypair() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "tk-key-"));
  try {
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "sdk-test", "-f", path.join(d, "k")]);
    return fs.readFileSync(path.join(d, "k.pub"), "utf8").trim();
  } finally {
    fs.rmSync(d, { recursive: true });
  }
}

const t = haveTree ? test : test.skip;

before(async () => {
  if (!haveTree) return;
  // the seed's create example, as written
  session = await sandbox.createAndWait({
    name: "demo",
    cpuCores: 4,
    memoryMb: 8192,
    allowInbound: true,
    allowOutbound: true,
    env: { APP_ENV: "dev" },
    metadata: { owner: "alice" },
  });
});

after(async () => {
  if (session) await session.delete().catch(() => {});
});

t("create example: the session has what was asked", async () => {
  const info = await session.refresh();
  assert.equal(session.name, "demo");
  assert.match(info.state, /^(READY|RUNNING)$/);
  assert.equal(info.cpu_cores, 4);
  assert.equal(info.memory_mb, 8192);
  assert.equal(info.allow_inbound, true);
  assert.equal(info.allow_outbound, true);
  assert.deepEqual(info.env, { APP_ENV: "dev" });
  assert.deepEqual(info.metadata, { owner: "alice" });
  assert.equal((await session.shell("echo $APP_ENV")).stdout, "dev\n");
});

t("list and get by name and id", async () => {
  const all = await sandbox.list();
  assert.ok(all.some((s) => s.name === "demo"));
  const byId = await sandbox.get(session.id);
  assert.equal(byId.name, "demo");
  await assert.rejects(sandbox.get("no-such-session"), (e) => e.code === "ENOENT");
});

t("exec example: one-shot with onOutput", async () => {
  await session.writeFile("/home/tenki/npm", NPM);
  await session.exec("install", { args: ["-m", "0755", "/home/tenki/npm", "/usr/local/bin/npm"], check: true });
  await session.writeFile(".npm-go", ""); // runs through
  const seen = [];
  // One-shot (the seed's example, as written but for collecting chunks)
  const result = await session.exec("npm", {
    args: ["test"],
    timeoutMs: 60_000,
    onOutput: (chunk) => {
      process.stdout.write(chunk.data);
      seen.push(chunk);
    },
  });
  assert.equal(result.exitCode, 0);
  assert.ok(result.ok);
  assert.equal(result.stdout, "> test: first line\n> test: last line\n");
  assert.equal(seen.map((c) => c.data).join(""), result.stdout);
  assert.ok(seen.every((c) => c.stream === "stdout"));
});

t("stream example: the first line arrives before the process ends", async () => {
  await session.removeFile(".npm-go").catch(() => {});
  const seen = [];
  // Or stream explicitly (the seed's example, as written, noting the
  // job's status at each chunk and letting it end after the first)
  const stream = await session.stream("npm", { args: ["test"] });
  for (;;) {
    const chunk = await stream.next();
    if (!chunk) break;
    process.stdout.write(chunk.data);
    seen.push([jobStatus(stream), chunk.data]);
    if (seen.length === 1) await session.writeFile(".npm-go", "");
  }
  const r = await stream.wait();
  assert.equal(r.exitCode, 0);
  assert.equal(seen.map((c) => c[1]).join(""), "> test: first line\n> test: last line\n");
  assert.match(seen[0][1], /first line/);
  assert.doesNotMatch(seen[0][1], /last line/);
  assert.equal(seen[0][0], "running");
});

t("exec with a timeout reports timed out", async () => {
  const t0 = Date.now();
  const r = await session.exec("sleep", { args: ["60"], timeoutMs: 2000 });
  assert.ok(Date.now() - t0 < 30_000);
  assert.equal(r.timedOut, true);
  assert.equal(r.ok, false);
  assert.equal(r.status, "timeout");
  assert.equal(r.exitCode, 124);
  assert.throws(() => r.check(), (e) => e instanceof CommandFailedError && /timed out/.test(e.message));
});

t("a failing command with check throws with its stderr", async () => {
  await assert.rejects(
    session.exec("sh", { args: ["-c", "echo 'it broke: disk on fire' >&2; exit 3"], check: true }),
    (e) => e instanceof CommandFailedError && /it broke: disk on fire/.test(e.message) && e.result.exitCode === 3,
  );
  assert.ok((await session.exec("true", { check: true })).ok);
});

t("exec: env, cwd, input, argv kept whole, stderr", async () => {
  let r = await session.exec("sh", { args: ["-c", 'echo "$X|$(pwd)"'], env: { X: "a b" }, cwd: "/tmp" });
  assert.equal(r.stdout, "a b|/tmp\n");
  r = await session.exec("wc", { args: ["-c"], input: new Uint8Array(1000) });
  assert.equal(r.stdout.trim(), "1000");
  r = await session.exec("printf", { args: ["[%s]", "a b", "$HOME"] });
  assert.equal(r.stdout, "[a b][$HOME]");
  r = await session.shell("echo o; echo e >&2; exit 5");
  assert.deepEqual([r.stdout, r.stderr, r.exitCode], ["o\n", "e\n", 5]);
});

t("stream: write to stdin, closeStdin", async () => {
  const s = await session.stream("cat");
  await s.write("hello ");
  await s.write(new TextEncoder().encode("world\n"));
  await s.closeStdin();
  const r = await s.wait(60_000);
  assert.equal(r.stdout, "hello world\n");
});

t("file example: writeFile and readFile", async () => {
  // the seed's example, as written
  await session.writeFile("/home/tenki/config.json", '{"key": "value"}');
  const data = await session.readFile("/home/tenki/config.json");
  assert.deepEqual(JSON.parse(data), { key: "value" });
  assert.equal((await session.exec("cat", { args: ["config.json"] })).stdout, '{"key": "value"}');
  const names = (await session.listFiles("/home/tenki")).map((e) => e.name);
  assert.ok(names.includes("config.json"));
  await session.writeFile("sub/dir/x.txt", "deep");
  assert.equal(await session.readFile("/home/tenki/sub/dir/x.txt"), "deep");
});

t("binary files round-trip byte for byte", async () => {
  const blob = Buffer.concat([Buffer.from([...Array(256).keys()]), randomBytes(3 * 1024 * 1024 + 7)]);
  await session.writeFile("/home/tenki/rand.bin", blob);
  const back = await session.readFileBytes("/home/tenki/rand.bin");
  assert.equal(Buffer.compare(Buffer.from(back), blob), 0);
  const r = await session.exec("sha256sum", { args: ["rand.bin"] });
  assert.equal(r.stdout.split(" ")[0], sha(blob));
  // binary output of a command, too
  const out = await session.exec("head", { args: ["-c", "4096", "rand.bin"] });
  assert.equal(Buffer.compare(Buffer.from(out.stdoutBytes), blob.subarray(0, 4096)), 0);
});

t("paths outside /home/tenki are refused with a permission error", async () => {
  for (const p of ["/tmp/x", "/etc/passwd", "/home/tenki/../etc/passwd", "../x"]) {
    await assert.rejects(session.readFile(p), (e) => e.code === "EACCES", p);
    await assert.rejects(session.writeFile(p, "x"), (e) => e.code === "EACCES", p);
  }
  await assert.rejects(session.readFile("missing.txt"), (e) => e.code === "ENOENT");
});

t("refusals carry the err file's reason", async () => {
  await assert.rejects(session._ctl("frobnicate"), (e) => e.code === "EINVAL" && /unknown verb/.test(e.reason));
  await assert.rejects(sandbox.create({ name: "demo" }), (e) => e.code === "EEXIST" && /exists/.test(e.message));
  await assert.rejects(sandbox.create({ name: "bad", cpuCores: 99 }), (e) => e.code === "EINVAL" && !!e.reason);
  assert.ok(!fs.existsSync(path.join(MOUNT, "sessions/bad")));
});

t("port example: exposePort, listExposedPorts, unexposePort", async (tc) => {
  if (!fs.existsSync(path.join(session.path, "ports"))) {
    tc.skip("this tree has no sessions/<name>/ports/ (ports not merged yet)");
    return;
  }
  await session.writeFile("www/index.html", "hello from the guest\n");
  const srv = await session.stream("python3", { args: ["-m", "http.server", "3000"], cwd: "/home/tenki/www" });
  try {
    // the seed's example, as written
    const port = await session.exposePort(3000, { ttlMs: 3600_000 });
    console.log(port.previewUrl);
    assert.match(port.previewUrl, /^http/);
    assert.ok(port.expiresAt instanceof Date);
    const ports = await session.listExposedPorts();
    assert.deepEqual(
      ports.map((p) => p.port),
      [3000],
    );
    // the shared preview listener and the port's own listener
    assert.match(port.previewUrl, /3000-demo\.localhost/);
    for (const url of [port.previewUrl, port.url]) {
      let body;
      for (let i = 0; i < 30 && body === undefined; i++) {
        try {
          body = await httpGet(url);
        } catch {
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      assert.equal(body, "hello from the guest\n", url);
    }
    await session.unexposePort(3000);
    assert.deepEqual(await session.listExposedPorts(), []);
  } finally {
    await srv.kill();
  }
  await assert.rejects(session.exposePort(0), (e) => e.code === "EINVAL");
  await assert.rejects(session.exposePort(65536), (e) => e.code === "EINVAL");
});

t("updateSshAuthorizedKeys replaces the set", async () => {
  const k = keypair();
  await session.updateSshAuthorizedKeys([k]);
  assert.equal(fs.readFileSync(path.join(session.path, "ssh/authorized_keys"), "utf8"), k + "\n");
  await assert.rejects(session.updateSshAuthorizedKeys(["ssh-ed25519 AAAA..."]), (e) => e.code === "EINVAL");
});

// rmdir that waits out EBUSY: a volume is detached as its session goes.
async function rmdirBusy(p) {
  for (let i = 0; ; i++) {
    try {
      return fs.rmdirSync(p);
    } catch (e) {
      if (e.code !== "EBUSY" || i >= 60) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

t("volumes in create", async (tc) => {
  if (!fs.existsSync(path.join(MOUNT, "volumes"))) {
    tc.skip("this tree has no volumes/ (volumes not merged yet)");
    return;
  }
  fs.writeFileSync(path.join(MOUNT, "volumes/new"), "name=tsvol size=64M");
  const v = await sandbox.createAndWait({ name: "tsvol-user", volumes: [{ volumeId: "tsvol", mountPath: "/data", readOnly: false }] });
  try {
    assert.deepEqual(
      v.info.volumes.map((x) => [x.mount_path, x.read_only]),
      [["/data", false]],
    );
    await v.exec("sh", { args: ["-c", "echo kept > /data/f && sync"], check: true });
    assert.equal((await v.exec("cat", { args: ["/data/f"] })).stdout, "kept\n");
  } finally {
    await v.delete();
    await rmdirBusy(path.join(MOUNT, "volumes/tsvol"));
  }
});

t("snapshotId in create restores a snapshot", async (tc) => {
  if (!fs.existsSync(path.join(MOUNT, "snapshots"))) {
    tc.skip("this tree has no snapshots/ (snapshots not merged yet)");
    return;
  }
  await session.writeFile("snap-marker", "before snapshot\n");
  await session.snapshot("ts-snap");
  let state;
  for (let i = 0; i < 300; i++) {
    state = fs.readFileSync(path.join(MOUNT, "snapshots/ts-snap/state"), "utf8").trim();
    if (state !== "CREATING") break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.equal(state, "READY");
  const r = await sandbox.createAndWait({ name: "ts-restored", snapshotId: "ts-snap" });
  try {
    assert.equal(await r.readFile("snap-marker"), "before snapshot\n");
    assert.equal(r.info.snapshot, "ts-snap");
  } finally {
    await r.delete();
    await rmdirBusy(path.join(MOUNT, "snapshots/ts-snap"));
  }
});

t("create without waiting, waitReady, extend, Symbol.asyncDispose", async () => {
  const s2 = await sandbox.create({ sshAuthorizedKeys: [keypair()], maxDurationMs: 600_000 });
  assert.match(await s2.state(), /^(CREATING|READY)$/);
  await s2.waitReady(180_000);
  const exp0 = new Date(s2.info.expires_at);
  await s2.extend(600_000); // +10 minutes
  await s2.refresh();
  assert.ok(Math.abs(new Date(s2.info.expires_at) - exp0 - 600_000) < 5000);
  await s2[Symbol.asyncDispose]();
  assert.equal(await s2.state(), "TERMINATED");
  assert.equal(await s2.closeIfOpen(), false);
  await s2.delete();
});

t("lifecycle example: extend, pause, resume, close", async () => {
  // the seed's example, as written
  await session.extend(600_000); // +10 minutes
  await session.pause();
  const paused = await session.state();
  await session.resume();
  const resumed = await session.state();
  await session.close(); // or use Symbol.asyncDispose
  assert.equal(paused, "PAUSED");
  assert.match(resumed, /^(READY|RUNNING)$/);
  assert.equal(await session.state(), "TERMINATED");
  // a session without a deadline keeps none (docs/tree.md)
  assert.equal((await session.refresh()).expires_at, null);
});
