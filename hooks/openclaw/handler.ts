// OpenClaw hook: sync the memory vault before compaction and at the end of a session.
// Install: copy this folder to ~/.openclaw/hooks/vault-sync/ and enable it
// (`openclaw hooks enable vault-sync`). VAULT_BIN overrides the vault command.
import { spawn } from "node:child_process";

const handler = async (event: { type: string; action?: string }) => {
  const bin = process.env.VAULT_BIN ?? "vault";
  await new Promise<void>((resolve) => {
    const child = spawn(bin, ["sync", "--quiet"], { stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGTERM"), 120_000);
    child.on("exit", () => { clearTimeout(timer); resolve(); });
    child.on("error", () => { clearTimeout(timer); resolve(); });  // vault not installed: do not block
  });
};

export default handler;
