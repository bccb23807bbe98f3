// Types of tenki-sandbox (index.js): a client of the tenki file tree.

// Symbol.asyncDispose (Node 18.18+, 20.4+), for TypeScript versions whose
// lib does not declare it yet.
declare global {
  interface SymbolConstructor {
    readonly asyncDispose: unique symbol;
  }
}

export interface CreateOptions {
  name?: string;
  cpuCores?: number;
  memoryMb?: number;
  allowInbound?: boolean;
  allowOutbound?: boolean;
  env?: Record<string, string>;
  metadata?: Record<string, string>;
  sshAuthorizedKeys?: string[];
  volumes?: { volumeId: string; mountPath: string; readOnly?: boolean }[];
  snapshotId?: string;
  template?: string;
  image?: string;
  host?: string;
  maxDurationMs?: number;
  waitTimeoutMs?: number;
}

export interface SessionInfo {
  id: string;
  name: string;
  state: "CREATING" | "READY" | "RUNNING" | "PAUSED" | "TERMINATING" | "TERMINATED";
  cpu_cores: number;
  memory_mb: number;
  allow_inbound: boolean;
  allow_outbound: boolean;
  created_at: string;
  expires_at: string | null;
  env: Record<string, string>;
  metadata: Record<string, string>;
  image: string;
  snapshot: string | null;
  template: string | null;
  volumes: { volume_id: string; name: string; mount_path: string; read_only: boolean }[];
  ports: { port: number; url: string; expires_at: string | null }[];
  ssh: { target: string | null; keys: number };
  reason?: string | null;
  [key: string]: unknown;
}

export interface OutputChunk {
  stream: "stdout" | "stderr";
  /** the chunk decoded as UTF-8 (multi-byte characters are never split) */
  data: string;
  bytes: Uint8Array;
}

export interface StreamOptions {
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
  /** run `cmd` as one /bin/sh -c line */
  shell?: boolean;
}

export interface ExecOptions extends StreamOptions {
  input?: string | Uint8Array;
  onOutput?: (chunk: OutputChunk) => void;
  /** throw CommandFailedError unless the command succeeded */
  check?: boolean;
}

export interface ExposedPort {
  port: number;
  /** the port's own host listener, http://HOST:PORT/ */
  url: string;
  /** http://PORT-NAME.localhost:P/ on the shared preview listener, else url */
  previewUrl: string;
  expiresAt: Date | null;
}

export interface FileEntry {
  name: string;
  path: string;
  size: number;
  isDirectory: boolean;
  mode: number;
  modified: Date;
}

export class SandboxError extends Error {
  /** errno name, e.g. "EINVAL", "ENOENT", "EACCES", "ETIMEDOUT" */
  code?: string;
  errno?: number;
  /** the line tenkid appended to the nearest `err` file */
  reason?: string;
}

export class CommandFailedError extends SandboxError {
  result: ExecResult;
}

export class ExecResult {
  jobId: string;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
  stderrBytes: Uint8Array;
  exitCode: number;
  /** "exited N" | "killed SIG" | "timeout" | "failed REASON" */
  status: string;
  timedOut: boolean;
  ok: boolean;
  durationMs?: number;
  info: Record<string, unknown>;
  check(): ExecResult;
}

export class ExecStream implements AsyncIterable<OutputChunk> {
  jobId: string;
  /** the next chunk, or null once stdout and stderr have both ended */
  next(): Promise<OutputChunk | null>;
  write(data: string | Uint8Array): Promise<void>;
  closeStdin(): Promise<void>;
  kill(signal?: string): Promise<void>;
  wait(timeoutMs?: number): Promise<ExecResult>;
  [Symbol.asyncIterator](): AsyncIterator<OutputChunk>;
}

export class Session {
  readonly name: string;
  readonly path: string;
  readonly id: string | undefined;
  info: SessionInfo | null;
  refresh(): Promise<SessionInfo>;
  state(): Promise<SessionInfo["state"]>;
  waitReady(timeoutMs?: number): Promise<void>;
  extend(ms: number): Promise<void>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  close(): Promise<void>;
  closeIfOpen(): Promise<boolean>;
  delete(): Promise<void>;
  snapshot(name: string, options?: { ttlMs?: number }): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;

  exec(cmd: string, options?: ExecOptions): Promise<ExecResult>;
  shell(line: string, options?: Omit<ExecOptions, "args" | "shell">): Promise<ExecResult>;
  stream(cmd: string, options?: StreamOptions): Promise<ExecStream>;

  readFile(path: string): Promise<string>;
  readFileBytes(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: string | Uint8Array): Promise<void>;
  listFiles(path?: string): Promise<FileEntry[]>;
  removeFile(path: string): Promise<void>;

  exposePort(port: number, options?: { ttlMs?: number }): Promise<ExposedPort>;
  listExposedPorts(): Promise<ExposedPort[]>;
  unexposePort(port: number): Promise<void>;

  updateSshAuthorizedKeys(keys: string[]): Promise<void>;
}

export class TenkiSandbox {
  constructor(options?: { mount?: string });
  readonly mount: string;
  create(options?: CreateOptions): Promise<Session>;
  createAndWait(options?: CreateOptions): Promise<Session>;
  list(): Promise<Session[]>;
  get(nameOrId: string): Promise<Session>;
}

export function guestRel(path: string): string | null;

export default TenkiSandbox;
