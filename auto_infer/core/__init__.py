"""The small core both halves use: settings (the env-var contract), errors, filesystem helpers,
progress output, redaction, the run lock, the subprocess runner, ports and network namespaces.
It imports nothing from install/, serve/ or demo/."""
