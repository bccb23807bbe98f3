// The seed's TypeScript examples (Sessions page), as written, type-checked
// against index.d.ts by `tsc -p test` (tests/e2e/sdk-typescript.bats); the
// same code runs in sandbox.test.js.
import { TenkiSandbox } from "../index.js";

declare const process: { stdout: { write(s: string): boolean } };
declare const console: { log(...args: unknown[]): void };

export async function examples(sandbox: TenkiSandbox): Promise<void> {
  const session = await sandbox.createAndWait({
    name: "demo",
    cpuCores: 4,
    memoryMb: 8192,
    allowInbound: true,
    allowOutbound: true,
    env: { APP_ENV: "dev" },
    metadata: { owner: "alice" },
  });

  // One-shot
  const result = await session.exec("npm", {
    args: ["test"],
    timeoutMs: 60_000,
    onOutput: (chunk) => process.stdout.write(chunk.data),
  });
  // Or stream explicitly
  const stream = await session.stream("npm", { args: ["test"] });
  for (;;) {
    const chunk = await stream.next();
    if (!chunk) break;
    process.stdout.write(chunk.data);
  }
  await stream.wait();

  await session.writeFile("/home/tenki/config.json", '{"key": "value"}');
  const data = await session.readFile("/home/tenki/config.json");

  const port = await session.exposePort(3000, { ttlMs: 3600_000 });
  console.log(port.previewUrl);

  await session.extend(600_000); // +10 minutes
  await session.pause();
  await session.resume();
  await session.close(); // or use Symbol.asyncDispose
  await session[Symbol.asyncDispose]();

  const ok: boolean = result.ok && data.length > 0;
  console.log(ok);
}
