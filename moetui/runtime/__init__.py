"""Running models: an isolated llama-cpp-python worker process (worker_main) driven from the app by
client.ModelWorker, with tensor buffer overrides through ctypes (overrides_ctypes), speculative decoding
(speculative), live stats and llama.cpp load-log parsing (stats) and llama-bench-style measurement
(bench). Only the worker process imports llama_cpp."""
