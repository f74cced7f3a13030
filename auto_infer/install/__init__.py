"""Everything between a pixi.lock and a healthy environment: lock reading, template copy, cache
manifest + audit + wheel store, warm/install with its record and health check, the backends."""
