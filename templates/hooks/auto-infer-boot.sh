#!/usr/bin/env bash
# auto-infer-boot.sh: the container entry hook for auto-infer (SGLang install/serve on boot).
#
# Runs `auto-infer boot`, which does what the gates say (all off by default: it then does nothing
# and says so in one line):
#   AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT=1  warm the caches (online only)
#   AUTO_INFER_SGLANG_REHEARSE_ON_BOOT=1    warm, then rehearse the offline install (scratch, no network)
#   AUTO_INFER_SGLANG_INSTALL_ON_BOOT=1     install the environment from the caches, then check it
#   AUTO_INFER_SGLANG_ON_BOOT=1             install + check, then serve the model config
#                                           (infer-dev's AUTO_INFER_VLLM_ON_BOOT / AUTO_INFER_LLAMA_CPP_ON_BOOT too)
# A gate set to anything but 1/true/yes/on or 0/false/no/off stops boot with an error naming it.
# Its output is shown and appended to ${AUTO_INFER_WORKSPACE_DIR}/logs/boot.log (/tmp when the
# workspace is not writable). It never holds the container's start for ever: boot is stopped after
# AUTO_INFER_BOOT_TIMEOUT seconds (default 7200); steps finished by then are kept and the next boot
# resumes. AUTO_INFER_BOOT_BACKGROUND=1 runs it detached and returns 0 at once (outcome in the log).
#
# Exit status: 0 done or nothing to do; 1 a step failed (the "✗ STEP failed" line says which and
# why) or a setting was refused (the "auto-infer: ..." line names it); 124 timed out; 127 auto-infer is not installed; 130 interrupted; 3 internal error (a crash
# log is named). The last line, on stderr and in the log, always says which.
#
# Wiring (templates/docker/infer-dev-entry.snippet.sh): in the image's entry script, before it execs
# the container's command:
#   /opt/auto-infer/hooks/auto-infer-boot.sh || echo "auto-infer boot failed (exit $?)" >&2
set -uo pipefail

TAG="[auto-infer-boot]"
WS="${AUTO_INFER_WORKSPACE_DIR:-/offline-data}"
LIMIT="${AUTO_INFER_BOOT_TIMEOUT:-7200}"

say() { printf '%s %s\n' "$TAG" "$*" >&2; }

truthy() {
  case "$(printf '%s' "${1:-}" | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]')" in
    1|true|yes|on|y|t) return 0 ;;
    *) return 1 ;;
  esac
}

log_path() {
  local dir="$WS/logs"
  if mkdir -p "$dir" 2>/dev/null && touch "$dir/boot.log" 2>/dev/null; then
    printf '%s\n' "$dir/boot.log"
  else
    printf '%s\n' "${TMPDIR:-/tmp}/auto-infer-boot.log"
  fi
}

outcome() {  # exit status -> one line
  case "$1" in
    0) echo "done" ;;
    1) echo "a step failed or a setting was refused (the ✗ or auto-infer: line above says why)" ;;
    124|137) echo "timed out after ${LIMIT}s (AUTO_INFER_BOOT_TIMEOUT); finished steps are kept, the next boot resumes" ;;
    127) echo "auto-infer is not installed or not on PATH (templates/docker/ shows how to install it)" ;;
    130) echo "interrupted" ;;
    3) echo "internal error in auto-infer (the line above names its crash log)" ;;
    *) echo "failed" ;;
  esac
}

run_boot() {  # $1 = log file; returns auto-infer's exit status
  local log="$1" status
  printf '%s %s start: warm=%s rehearse=%s install=%s serve=%s timeout=%ss workspace=%s\n' "$TAG" "$(date -Is)" \
    "${AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT:-0}" "${AUTO_INFER_SGLANG_REHEARSE_ON_BOOT:-0}" \
    "${AUTO_INFER_SGLANG_INSTALL_ON_BOOT:-0}" \
    "${AUTO_INFER_SGLANG_ON_BOOT:-0}${AUTO_INFER_VLLM_ON_BOOT:+ vllm=$AUTO_INFER_VLLM_ON_BOOT}${AUTO_INFER_LLAMA_CPP_ON_BOOT:+ llama.cpp=$AUTO_INFER_LLAMA_CPP_ON_BOOT}" \
    "$LIMIT" "$WS" | tee -a "$log" >&2
  if ! command -v auto-infer >/dev/null 2>&1; then
    status=127
  elif command -v timeout >/dev/null 2>&1; then
    # SIGTERM first (auto-infer then records what finished), SIGKILL 30 s later if it is still there
    timeout --kill-after=30 "$LIMIT" auto-infer boot 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
  else
    say "timeout(1) is missing (coreutils): boot runs without a time limit" 2>&1 | tee -a "$log" >&2
    auto-infer boot 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
  fi
  printf '%s %s exit %s: %s; log: %s\n' "$TAG" "$(date -Is)" "$status" "$(outcome "$status")" "$log" \
    | tee -a "$log" >&2
  return "$status"
}

main() {
  case "$LIMIT" in
    ''|*[!0-9]*|0)
      say "AUTO_INFER_BOOT_TIMEOUT=$LIMIT is not a positive whole number of seconds (e.g. 7200)"
      return 1 ;;
  esac
  local log
  log="$(log_path)"
  if truthy "${AUTO_INFER_BOOT_BACKGROUND:-0}"; then
    local runner=(nohup)
    command -v setsid >/dev/null 2>&1 && runner=(setsid nohup)
    AUTO_INFER_BOOT_BACKGROUND=0 "${runner[@]}" bash "${BASH_SOURCE[0]}" >/dev/null 2>&1 </dev/null &
    say "boot runs in the background (pid $!); its outcome will be the last line of $log"
    return 0
  fi
  run_boot "$log"
}

main "$@"
