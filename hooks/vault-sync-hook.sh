#!/bin/sh
# Generic agent hook: sync the memory vault, never block the agent.
#   - exits 0 even when vault fails (the failure is in vault's log and `vault status`);
#   - exit 11 (another sync is running) is normal when hooks fire close together: not logged.
# Use: call it from any agent's "before compaction" / "session end" hook, or
#   VAULT_CONFIG=~/.config/vault/vault.toml hooks/vault-sync-hook.sh
VAULT="${VAULT_BIN:-vault}"
LOG="${VAULT_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/vault}/vault.log"
mkdir -p "$(dirname "$LOG")"
out=$("$VAULT" sync --quiet 2>&1)
code=$?
case "$code" in
  0) [ -z "$out" ] || printf '%s\n' "$out" >>"$LOG" ;;
  11) ;;
  *) { [ -z "$out" ] || printf '%s\n' "$out"
       echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) vault sync exited $code (see vault status)"; } >>"$LOG" ;;
esac
exit 0
