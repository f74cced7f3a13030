# --- auto-infer: SGLang install / serve on boot -------------------------------------------------
# Paste into dockers/infer-dev/installation/stage-2/custom/infer-dev-entry.sh, before its final
# `exec "$@"` / `exec /bin/bash`. Does nothing unless a gate is set (AUTO_INFER_SGLANG_CACHE_WARM_ON_BOOT,
# AUTO_INFER_SGLANG_INSTALL_ON_BOOT, AUTO_INFER_SGLANG_ON_BOOT); its waits are bounded
# (AUTO_INFER_BOOT_TIMEOUT); a failure is reported in one line and the container still starts, so
# you can `docker exec` in, read logs/boot.log and run `auto-infer install` / `auto-infer serve` by hand.
if [[ -x /opt/auto-infer/hooks/auto-infer-boot.sh ]]; then
  /opt/auto-infer/hooks/auto-infer-boot.sh \
    || echo "[infer-dev-entry] auto-infer boot failed (exit $?): see ${AUTO_INFER_WORKSPACE_DIR:-/offline-data}/logs/boot.log" >&2
fi
# Manual mode, after boot: docker exec -it <container> auto-infer install   (then: auto-infer serve)
# ------------------------------------------------------------------------------------------------
