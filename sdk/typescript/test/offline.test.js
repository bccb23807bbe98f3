// Parts of tenki-sandbox that need no tree.
import { test } from "node:test";
import assert from "node:assert/strict";
import { guestRel, TenkiSandbox, Session, SandboxError } from "../index.js";

test("guest paths: under /home/tenki or relative to it, .. resolved", () => {
  const cases = [
    ["/home/tenki", ""],
    ["/home/tenki/a/b", "a/b"],
    ["a/./b//c", "a/b/c"],
    ["a/../b", "b"],
    ["/home/tenki/a/../../tenki/x", null],
    ["..", null],
    ["/tmp/x", null],
    ["/home/tenkix", null],
  ];
  for (const [p, want] of cases) assert.equal(guestRel(p), want, p);
});

test("mount: constructor, else TENKI_MOUNT, else /tenki", () => {
  const old = process.env.TENKI_MOUNT;
  try {
    delete process.env.TENKI_MOUNT;
    assert.equal(new TenkiSandbox().mount, "/tenki");
    process.env.TENKI_MOUNT = "/elsewhere";
    assert.equal(new TenkiSandbox().mount, "/elsewhere");
    assert.equal(new TenkiSandbox({ mount: "/given" }).mount, "/given");
  } finally {
    if (old === undefined) delete process.env.TENKI_MOUNT;
    else process.env.TENKI_MOUNT = old;
  }
});

test("bad port numbers are refused before the tree is touched", () => {
  for (const p of [0, 65536, -1, 1.5]) assert.throws(() => Session._port(p), (e) => e instanceof SandboxError && e.code === "EINVAL");
});
