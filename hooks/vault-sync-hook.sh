#!/bin/sh
# Generic agent hook: sync the memory vault, never block the agent.
#   - exits 0 even when vault fails (the failure is in vault's log and `vault status`);
#   - exit 11 (another sync holds the lock, e.g. a cron sync pushing over a slow link): waits for
#     it and syncs after it, retrying every second for up to VAULT_HOOK_WAIT seconds (default 45,
#     well inside Claude Code's default 60 s hook timeout). Giving up right away would lose the
#     memory the agent is about to compact. Still busy at the end: one "skipped" line in the log.
#     A busy attempt runs none of vault.toml's [hooks] (pre_sync, on_failure): retrying does not
#     repeat them, and the sync that finally runs runs them once.
# Use: call it from any agent's "before compaction" / "session end" hook, or
#   VAULT_CONFIG=~/.config/vault/vault.toml hooks/vault-sync-hook.sh
VAULT="${VAULT_BIN:-vault}"
WAIT="${VAULT_HOOK_WAIT:-45}"
case "$WAIT" in ''|*[!0-9]*) WAIT=45 ;; esac
# The data dir as vault itself finds it (vault/locate.py): VAULT_HOME, else XDG_DATA_HOME/vault,
# a leading ~ in either being $HOME (a quoted "~/vh" in an agent's settings is not expanded by
# any shell: without this the log went to ./~/vh/ in the agent's working folder).
tilde() { case "$1" in "~") printf '%s' "$HOME" ;; "~/"*) printf '%s/%s' "$HOME" "${1#"~/"}" ;;
  *) printf '%s' "$1" ;; esac; }
if [ -n "${VAULT_HOME:-}" ]; then DATA=$(tilde "$VAULT_HOME")
else DATA="$(tilde "${XDG_DATA_HOME:-$HOME/.local/share}")/vault"; fi
LOG="$DATA/vault.log"
mkdir -p "$(dirname "$LOG")"
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
deadline=$(( $(date +%s) + WAIT ))
while :; do
  out=$("$VAULT" sync --quiet 2>&1)
  code=$?
  [ "$code" -eq 11 ] && [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 1
done
case "$code" in
  0) [ -z "$out" ] || printf '%s\n' "$out" >>"$LOG" ;;
  11) echo "$(now) vault sync skipped: another sync still held the lock after ${WAIT} s" >>"$LOG" ;;
  *) { [ -z "$out" ] || printf '%s\n' "$out"
       echo "$(now) vault sync exited $code (see vault status)"; } >>"$LOG" ;;
esac
exit 0
