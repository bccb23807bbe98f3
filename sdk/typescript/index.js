// tenki-sandbox: a Node client of the tenki file tree.  Every call opens,
// reads or writes files under the mount (TENKI_MOUNT, else /tenki, or the
// constructor's `mount`); there is no other protocol and no dependency.
import { constants } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const CHUNK = 1 << 20; // the tree's largest single read or write
const HOME = "/home/tenki";
const FINAL = new Set(["TERMINATING", "TERMINATED"]);

/** A refused operation: `code` is the errno name ("EINVAL"...), `reason`
 * the line tenkid appended to the nearest `err` file. */
export class SandboxError extends Error {
  constructor(message, { code, errno, reason } = {}) {
    super(message);
    this.name = "SandboxError";
    this.code = code;
    this.errno = errno;
    this.reason = reason;
  }
}

/** A command that exited non-zero, was killed or timed out. */
export class CommandFailedError extends SandboxError {
  constructor(message, result) {
    super(message, {});
    this.name = "CommandFailedError";
    this.result = result;
  }
}

function durationText(ms) {
  if (typeof ms !== "number" || !(ms >= 0)) throw new TypeError(`bad duration: ${ms}`);
  return `${Math.ceil(ms / 1000)}s`;
}

async function fileSize(p) {
  try {
    return (await fsp.readFile(p)).length;
  } catch {
    return 0;
  }
}

// Remembers how long some err files were; after a refusal, the last line
// appended to the nearest of them (without its time) is the reason.
class ErrMark {
  static async of(...files) {
    const m = new ErrMark();
    m.marks = await Promise.all(files.map(async (f) => [f, await fileSize(f)]));
    return m;
  }
  async reason() {
    for (const [f, size] of this.marks) {
      let buf;
      try {
        buf = await fsp.readFile(f);
      } catch {
        continue;
      }
      if (buf.length <= size) continue;
      const lines = buf.subarray(size).toString().trim().split("\n");
      let line = lines[lines.length - 1];
      const sp = line.indexOf(" ");
      if (/^[0-9]/.test(line) && sp > 0) line = line.slice(sp + 1);
      if (line) return line;
    }
    return undefined;
  }
}

async function refusals(what, errFiles, fn) {
  const mark = await ErrMark.of(...errFiles);
  try {
    return await fn();
  } catch (e) {
    if (e instanceof SandboxError || !e || !e.code) throw e;
    const reason = e.code === "ENOTCONN" ? "tenkid is not running (stale mount)" : await mark.reason();
    const text = e.message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
    throw new SandboxError(reason ? `${what}: ${reason} (${text})` : `${what}: ${text}`, {
      code: e.code,
      errno: e.errno,
      reason,
    });
  }
}

/** Read a file to EOF (tree files report no useful size). */
async function readAll(p) {
  const fh = await fsp.open(p, "r");
  try {
    const parts = [];
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      parts.push(buf.subarray(0, bytesRead));
    }
    return Buffer.concat(parts);
  } finally {
    await fh.close();
  }
}

async function readLine(p) {
  return (await readAll(p)).toString().split("\n")[0];
}

/** Read a blocking file (wait, exit) to EOF; after timeoutMs give up with
 * an ETIMEDOUT SandboxError.  O_NONBLOCK reads say EAGAIN while it blocks. */
async function readBlocking(p, timeoutMs) {
  if (timeoutMs === undefined || timeoutMs === null) return readAll(p);
  const deadline = Date.now() + timeoutMs;
  const fh = await fsp.open(p, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const parts = [];
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK);
      let n;
      try {
        n = (await fh.read(buf, 0, CHUNK, null)).bytesRead;
      } catch (e) {
        if (e.code !== "EAGAIN") throw e;
        if (Date.now() >= deadline)
          throw new SandboxError(`${p}: still blocked after ${timeoutMs} ms`, { code: "ETIMEDOUT" });
        await sleep(100);
        continue;
      }
      if (n === 0) break;
      parts.push(buf.subarray(0, n));
    }
    return Buffer.concat(parts);
  } finally {
    await fh.close();
  }
}

/** One open, whole writes, close (value files apply at close). */
async function writeWhole(p, data, flags = "w") {
  const fh = await fsp.open(p, flags);
  try {
    const buf = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    for (let off = 0; off < buf.length; ) {
      const { bytesWritten } = await fh.write(buf, off, Math.min(CHUNK, buf.length - off));
      off += bytesWritten;
    }
  } finally {
    await fh.close();
  }
}

/** "/home/tenki/a/../b" -> "b"; "x" -> "x"; "/tmp/x" -> null. */
export function guestRel(p) {
  if (p.startsWith("/")) {
    if (p !== HOME && !p.startsWith(HOME + "/")) return null;
    p = p.slice(HOME.length);
  }
  const out = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return null;
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out.join("/");
}

/** What a finished job left. */
export class ExecResult {
  constructor(jobId, stdout, stderr, exitCode, status, info) {
    this.jobId = jobId;
    this.stdoutBytes = new Uint8Array(stdout);
    this.stderrBytes = new Uint8Array(stderr);
    this.stdout = stdout.toString();
    this.stderr = stderr.toString();
    this.exitCode = exitCode;
    this.status = status; // "exited N" | "killed SIG" | "timeout" | "failed ..."
    this.info = info || {};
    this.timedOut = status === "timeout" || !!this.info.timed_out;
    this.durationMs = this.info.duration_ms;
    this.ok = exitCode === 0 && !this.timedOut;
  }
  /** Throw CommandFailedError unless the command succeeded. */
  check() {
    if (this.ok) return this;
    const err = this.stderr.trim();
    throw new CommandFailedError(
      `command failed (${this.timedOut ? "timed out" : this.status}, exit=${this.exitCode})${err ? ": " + err : ""}`,
      this,
    );
  }
}

/** A started job: next() gives output chunks live, write()/closeStdin()
 * feed stdin, wait() gives the ExecResult. */
export class ExecStream {
  constructor(session, jobId) {
    this.session = session;
    this.jobId = jobId;
    this.dir = path.join(session.path, "exec", jobId);
    this._queue = [];
    this._waiters = [];
    this._open = 0;
    this._stdin = null;
    this._stdinClosed = false;
    this._error = null;
  }

  _pump(name) {
    this._open++;
    const decoder = new TextDecoder();
    (async () => {
      const fh = await fsp.open(path.join(this.dir, name), "r");
      try {
        for (;;) {
          const buf = Buffer.allocUnsafe(65536);
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          const bytes = new Uint8Array(buf.subarray(0, bytesRead));
          this._push({ stream: name, data: decoder.decode(bytes, { stream: true }), bytes });
        }
        const rest = decoder.decode();
        if (rest) this._push({ stream: name, data: rest, bytes: new Uint8Array(0) });
      } finally {
        await fh.close();
      }
    })()
      .catch((e) => {
        this._error = this._error || e;
      })
      .finally(() => {
        this._open--;
        this._push(null);
      });
  }

  _push(chunk) {
    if (chunk) this._queue.push(chunk);
    const w = this._waiters;
    this._waiters = [];
    w.forEach((f) => f());
  }

  /** The next chunk ({stream, data, bytes}), or null once both streams ended. */
  async next() {
    for (;;) {
      if (this._queue.length) return this._queue.shift();
      if (this._open === 0) {
        if (this._error) throw this._error;
        return null;
      }
      await new Promise((r) => this._waiters.push(r));
    }
  }

  async *[Symbol.asyncIterator]() {
    for (let c; (c = await this.next()); ) yield c;
  }

  /** Send bytes or text to stdin. */
  async write(data) {
    await refusals(`job ${this.jobId}: stdin`, this.session._errFiles(), async () => {
      if (!this._stdin) this._stdin = await fsp.open(path.join(this.dir, "stdin"), "w");
      await this._stdin.write(typeof data === "string" ? Buffer.from(data) : data);
    });
  }

  /** EOF on stdin (a job that ended already is fine). */
  async closeStdin() {
    if (this._stdinClosed) return;
    this._stdinClosed = true;
    if (this._stdin) {
      const fh = this._stdin;
      this._stdin = null;
      await fh.close();
      return;
    }
    await writeWhole(path.join(this.dir, "ctl"), "eof\n").catch(() => {});
  }

  async kill(signal) {
    await refusals(`job ${this.jobId}: kill`, this.session._errFiles(), () =>
      writeWhole(path.join(this.dir, "ctl"), signal ? `kill ${signal}\n` : "kill\n"),
    );
  }

  /** Block until the job ends and return its result. */
  async wait(timeoutMs) {
    return refusals(`job ${this.jobId}`, this.session._errFiles(), async () => {
      const code = parseInt((await readBlocking(path.join(this.dir, "exit"), timeoutMs)).toString(), 10);
      const [out, err, status, info] = await Promise.all([
        readAll(path.join(this.dir, "stdout")),
        readAll(path.join(this.dir, "stderr")),
        readLine(path.join(this.dir, "status")),
        readAll(path.join(this.dir, "info.json")).then((b) => JSON.parse(b.toString()), () => ({})),
      ]);
      return new ExecResult(this.jobId, out, err, code, status, info);
    });
  }
}

function parseExpires(v) {
  return !v || v === "never" ? null : new Date(v);
}

/** One session directory, sessions/<name>. */
export class Session {
  constructor(client, name, info) {
    this.client = client;
    this.name = name;
    this.path = path.join(client.mount, "sessions", name);
    this.info = info || null;
  }

  get id() {
    return this.info ? this.info.id : undefined;
  }

  _errFiles() {
    return [path.join(this.path, "err"), path.join(this.client.mount, "sessions", "err")];
  }

  _do(what, fn) {
    return refusals(what, this._errFiles(), fn);
  }

  /** Re-read info.json; returns it. */
  async refresh() {
    this.info = await this._do(`session ${this.name}`, async () =>
      JSON.parse((await readAll(path.join(this.path, "info.json"))).toString()),
    );
    return this.info;
  }

  /** The current state, read from the tree. */
  async state() {
    return this._do(`session ${this.name}`, () => readLine(path.join(this.path, "state")));
  }

  /** Wait until usable (READY/RUNNING); throws on timeout or a final state. */
  async waitReady(timeoutMs = 180_000) {
    const st = await this._do(`session ${this.name}: wait`, async () =>
      (await readBlocking(path.join(this.path, "wait"), timeoutMs)).toString().trim(),
    );
    await this.refresh();
    if (st !== "READY" && st !== "RUNNING")
      throw new SandboxError(`session ${this.name} is ${st}, not usable${this.info.reason ? ": " + this.info.reason : ""}`);
  }

  async _ctl(verb) {
    await this._do(`session ${this.name}: ${verb}`, () => writeWhole(path.join(this.path, "ctl"), verb + "\n"));
  }

  /** Push the deadline back by ms milliseconds. */
  extend(ms) {
    return this._ctl(`extend ${durationText(ms)}`);
  }
  pause() {
    return this._ctl("pause");
  }
  resume() {
    return this._ctl("resume");
  }
  /** Terminate the session (its record stays until delete()). */
  close() {
    return this._ctl("close");
  }
  /** close() unless closed or gone already; true if it closed. */
  async closeIfOpen() {
    try {
      if (FINAL.has(await this.state())) return false;
      await this.close();
      return true;
    } catch (e) {
      if (e.code === "ENOENT") return false;
      throw e;
    }
  }
  /** rmdir: closes the session if open and removes every trace. */
  delete() {
    return this._do(`delete session ${this.name}`, () => fsp.rmdir(this.path));
  }
  async [Symbol.asyncDispose]() {
    await this.closeIfOpen();
  }
  /** Capture the session as snapshot `name`. */
  snapshot(name, { ttlMs } = {}) {
    return this._ctl(`snapshot ${name}${ttlMs !== undefined ? " ttl=" + durationText(ttlMs) : ""}`);
  }

  // ---- exec ----

  /** Start a job: `cmd` with opts.args (no shell), or opts.shell = true to
   * run `cmd` as a shell line.  stdin stays open until closeStdin(). */
  async stream(cmd, { args = [], env, cwd, timeoutMs, shell = false } = {}) {
    const what = `exec in session ${this.name}`;
    const argv = [cmd, ...args].map(String);
    if (!shell && argv.some((a) => a.includes("\n")))
      throw new TypeError("an argument holds a newline, which argv cannot carry: use shell");
    const jobId = await this._do(what, () => readLine(path.join(this.path, "exec", "clone")));
    const s = new ExecStream(this, jobId);
    const put = (name, text) => this._do(`${what}: ${name}`, () => writeWhole(path.join(s.dir, name), text));
    try {
      if (env && Object.keys(env).length)
        await put(
          "env",
          Object.entries(env)
            .map(([k, v]) => `${k}=${v}\n`)
            .join(""),
        );
      if (cwd !== undefined) await put("cwd", cwd + "\n");
      if (timeoutMs !== undefined) await put("timeout", durationText(timeoutMs) + "\n");
      if (shell) await put("cmd", cmd + "\n");
      else await put("argv", argv.map((a) => a + "\n").join(""));
    } catch (e) {
      await fsp.rmdir(s.dir).catch(() => {}); // never started: leave no job
      throw e;
    }
    s._pump("stdout");
    s._pump("stderr");
    return s;
  }

  /** Run to the end; onOutput gets each chunk live.  check: throw
   * CommandFailedError on failure. */
  async exec(cmd, opts = {}) {
    const s = await this.stream(cmd, opts);
    if (opts.input !== undefined) await s.write(opts.input);
    await s.closeStdin();
    for (let c; (c = await s.next()); ) if (opts.onOutput) opts.onOutput(c);
    const r = await s.wait();
    return opts.check ? r.check() : r;
  }

  /** exec of a shell line (/bin/sh -c). */
  shell(line, opts = {}) {
    return this.exec(line, { ...opts, shell: true, args: [] });
  }

  // ---- files (the guest's /home/tenki) ----

  _host(p, what) {
    const rel = guestRel(p);
    if (rel === null)
      throw new SandboxError(`${what} ${p}: Permission denied: only paths under ${HOME} can be reached`, {
        code: "EACCES",
      });
    return path.join(this.path, "files", rel);
  }

  /** A file's text (UTF-8). */
  async readFile(p) {
    return new TextDecoder().decode(await this.readFileBytes(p));
  }
  async readFileBytes(p) {
    const h = this._host(p, "read");
    return this._do(`read ${p}`, async () => new Uint8Array(await readAll(h)));
  }
  /** Write a whole file (string or bytes), making parent directories. */
  async writeFile(p, data) {
    const h = this._host(p, "write");
    await this._do(`write ${p}`, async () => {
      await fsp.mkdir(path.dirname(h), { recursive: true });
      await writeWhole(h, data);
    });
  }
  /** Entries of a directory: {name, path, size, isDirectory, mode, modified}. */
  async listFiles(p = HOME) {
    const h = this._host(p, "list");
    return this._do(`list ${p}`, async () => {
      const names = (await fsp.readdir(h)).sort();
      const base = p.startsWith("/") ? p.replace(/\/+$/, "") : `${HOME}/${p}`.replace(/\/+$/, "");
      return Promise.all(
        names.map(async (name) => {
          const st = await fsp.lstat(path.join(h, name));
          return { name, path: `${base}/${name}`, size: st.size, isDirectory: st.isDirectory(), mode: st.mode & 0o7777, modified: st.mtime };
        }),
      );
    });
  }
  async removeFile(p) {
    const h = this._host(p, "remove");
    await this._do(`remove ${p}`, () => fsp.rm(h, { recursive: true }));
  }

  // ---- ports ----

  async _portsDir() {
    const d = path.join(this.path, "ports");
    try {
      if ((await fsp.stat(d)).isDirectory()) return d;
    } catch {}
    throw new SandboxError(`session ${this.name} has no ports/ (this tenkid does not expose ports)`, { code: "ENOTSUP" });
  }

  static _port(port) {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new SandboxError(`port ${port}: port numbers must be between 1 and 65535`, { code: "EINVAL" });
    return port;
  }

  async _readPort(port) {
    const d = await this._portsDir();
    const text = await this._do(`port ${port} of session ${this.name}`, async () => (await readAll(path.join(d, String(port)))).toString());
    let url = null,
      expires = null,
      preview = null;
    for (const line of text.split("\n")) {
      if (line.startsWith("url ")) url = line.slice(4);
      else if (line.startsWith("expires ")) expires = line.slice(8);
      else if (line.startsWith("preview ")) preview = line.slice(8);
    }
    // previewUrl: the shared preview listener's name for it, else url
    return { port, url, previewUrl: preview || url, expiresAt: parseExpires(expires) };
  }

  /** Expose a guest port (ttlMs: expiry, else none); gives {port, url, previewUrl, expiresAt}. */
  async exposePort(port, { ttlMs } = {}) {
    Session._port(port);
    const d = await this._portsDir();
    await this._do(`expose port ${port} of session ${this.name}`, () =>
      writeWhole(path.join(d, String(port)), ttlMs !== undefined ? durationText(ttlMs) + "\n" : "", constants.O_WRONLY | constants.O_CREAT),
    );
    return this._readPort(port);
  }

  async listExposedPorts() {
    const d = await this._portsDir();
    const names = await this._do(`ports of session ${this.name}`, () => fsp.readdir(d));
    const ports = names.filter((n) => /^[0-9]+$/.test(n)).map(Number).sort((a, b) => a - b);
    const out = [];
    for (const p of ports) {
      try {
        out.push(await this._readPort(p));
      } catch (e) {
        if (e.code !== "ENOENT") throw e;
      }
    }
    return out;
  }

  async unexposePort(port) {
    Session._port(port);
    const d = await this._portsDir();
    await this._do(`unexpose port ${port} of session ${this.name}`, () => fsp.unlink(path.join(d, String(port))));
  }

  // ---- ssh ----

  /** Replace the keys the SSH gateway accepts for this session. */
  async updateSshAuthorizedKeys(keys) {
    await this._do(`session ${this.name}: ssh keys`, () =>
      writeWhole(path.join(this.path, "ssh", "authorized_keys"), keys.map((k) => k.trim() + "\n").join("")),
    );
  }
}

function specOf(o = {}, wait) {
  const spec = {};
  const copy = [
    ["name", "name"],
    ["cpuCores", "cpu_cores"],
    ["memoryMb", "memory_mb"],
    ["allowInbound", "allow_inbound"],
    ["allowOutbound", "allow_outbound"],
    ["image", "image"],
    ["snapshotId", "snapshot"],
    ["template", "template"],
    ["host", "host"],
  ];
  for (const [k, key] of copy) if (o[k] !== undefined) spec[key] = o[k];
  if (o.env) spec.env = o.env;
  if (o.metadata) spec.metadata = o.metadata;
  if (o.sshAuthorizedKeys && o.sshAuthorizedKeys.length) spec.ssh_authorized_keys = o.sshAuthorizedKeys;
  if (o.volumes && o.volumes.length)
    spec.volumes = o.volumes.map((v) => ({ volume_id: v.volumeId, mount_path: v.mountPath, read_only: !!v.readOnly }));
  if (o.maxDurationMs !== undefined) spec.max_duration = durationText(o.maxDurationMs);
  if (o.waitTimeoutMs !== undefined) spec.wait_timeout = durationText(o.waitTimeoutMs);
  spec.wait = wait;
  return spec;
}

/** The tree at `mount` (else TENKI_MOUNT, else /tenki). */
export class TenkiSandbox {
  constructor({ mount } = {}) {
    this.mount = mount || process.env.TENKI_MOUNT || "/tenki";
  }

  _errFiles() {
    return [path.join(this.mount, "sessions", "err"), path.join(this.mount, "err")];
  }

  /** Create a session; returns at once (state CREATING). */
  create(options = {}) {
    return this._create(options, false);
  }

  /** Create a session and return once it is usable. */
  createAndWait(options = {}) {
    return this._create(options, true);
  }

  async _create(options, wait) {
    const text = JSON.stringify(specOf(options, wait));
    const what = `create session${options.name ? " " + options.name : ""}`;
    const name = await refusals(what, this._errFiles(), async () => {
      const fh = await fsp.open(path.join(this.mount, "sessions", "new"), "r+");
      try {
        await fh.write(Buffer.from(text));
        const buf = Buffer.alloc(256);
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
        return buf.subarray(0, bytesRead).toString().trim();
      } finally {
        await fh.close();
      }
    });
    if (!name) throw new SandboxError(`${what}: sessions/new gave no name back`);
    const s = new Session(this, name);
    await s.refresh();
    return s;
  }

  /** Every session (records from index.json). */
  async list() {
    const recs = await refusals("list sessions", this._errFiles(), async () =>
      JSON.parse((await readAll(path.join(this.mount, "sessions", "index.json"))).toString()),
    );
    return recs.map((r) => new Session(this, r.name, r));
  }

  /** A session by name or UUID. */
  async get(nameOrId) {
    if (!nameOrId || nameOrId.includes("/") || nameOrId === "." || nameOrId === "..")
      throw new SandboxError(`session '${nameOrId}': not a valid name or id`, { code: "EINVAL" });
    try {
      const s = new Session(this, nameOrId);
      await s.refresh();
      return s;
    } catch (e) {
      if (e.code !== "ENOENT") throw e;
    }
    for (const s of await this.list()) if (s.id && s.id.toLowerCase() === nameOrId.toLowerCase()) return s;
    throw new SandboxError(`session ${nameOrId}: no such session`, { code: "ENOENT" });
  }
}

export default TenkiSandbox;
