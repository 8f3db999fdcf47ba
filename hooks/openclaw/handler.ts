// OpenClaw hook: sync the memory vault before compaction and at the end of a session.
// Install: copy this folder to ~/.openclaw/hooks/vault-sync/ and enable it
// (`openclaw hooks enable vault-sync`). VAULT_BIN overrides the vault command.
// Behaves like hooks/vault-sync-hook.sh: never blocks the agent; when another sync holds the lock
// (exit 11) it waits for it and syncs after it, for up to VAULT_HOOK_WAIT seconds (default 45);
// failures, and a sync still busy at the end, are appended to vault.log in vault's data dir.
// A busy attempt runs none of vault.toml's [hooks], so retrying does not repeat them.
// Plain JavaScript that is also valid TypeScript (strict), so node runs it as it is.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { appendFileSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

// The events it runs on are listed in HOOK.md; it does the same for each, so it reads none.
const handler = async () => {
  const bin = process.env.VAULT_BIN ?? "vault";
  const wait = /^\d+$/.test(process.env.VAULT_HOOK_WAIT ?? "") ? Number(process.env.VAULT_HOOK_WAIT) : 45;
  // The data dir as vault itself finds it (vault/locate.py): VAULT_HOME, else XDG_DATA_HOME/vault,
  // a leading ~ in either being the home folder (as vault expands it; not ./~ in the agent's).
  const tilde = (path = "") =>  // (the default types it for TypeScript; node runs it as it is)
    path === "~" ? homedir() : path.startsWith("~/") ? join(homedir(), path.slice(2)) : path;
  const home = process.env.VAULT_HOME ? tilde(process.env.VAULT_HOME) :
    join(tilde(process.env.XDG_DATA_HOME || join(homedir(), ".local", "share")), "vault");
  const deadline = Date.now() + wait * 1000;
  let report = "";
  for (;;) {
    const child = spawn(bin, ["sync", "--quiet"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (chunk) => { out += chunk; });
    child.stderr.on("data", (chunk) => { out += chunk; });
    const timer = setTimeout(() => child.kill("SIGTERM"), 120_000);
    let code = null;
    let signal = null;
    try {
      [code, signal] = await once(child, "close");
    } catch (err) {  // vault not installed: log it, do not block
      out = `${err instanceof Error ? err.message : String(err)}\n`;
    } finally {
      clearTimeout(timer);
    }
    if (code === 11 && Date.now() < deadline) {
      await sleep(1000);
      continue;
    }
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    if (code === 0) {
      report = out;
    } else if (code === 11) {
      report = `${now} vault sync skipped: another sync still held the lock after ${wait} s\n`;
    } else {
      const why = code !== null ? `exited ${code}` : signal ? `was killed (${signal})` : "could not run";
      report = `${out}${now} vault sync ${why} (see vault status)\n`;
    }
    break;
  }
  if (report.trim() === "") return;
  try {
    mkdirSync(home, { recursive: true });
    appendFileSync(join(home, "vault.log"), report.endsWith("\n") ? report : `${report}\n`);
  } catch {
    // nowhere to log: still never block the agent
  }
};

export default handler;
