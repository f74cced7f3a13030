"""Everything between a model config and a ready, answering server: config + validation, the
launch (argv, environment), the process supervisor, probes, the report, status/logs/stop/chat."""
