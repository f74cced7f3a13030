"""auto-infer: get an LLM server running in a GPU container, online or fully air-gapped."""

__version__ = "0.1.0"
