"""What only the demo, the tests and the benchmarks need: a local conda channel builder, an HTTP
mirror, the test responder, the llama.cpp engine finder, and the demo driver."""
