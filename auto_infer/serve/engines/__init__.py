"""The engines serve can run, one module each (sglang, vllm, llamacpp, command), all providing
:class:`base.Engine`; :mod:`known` lists them and recognises a config's engine."""
