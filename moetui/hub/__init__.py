"""Models from the Hugging Face hub and from this machine. Never imports textual; every failure is a HubError
(network, offline: message starts with "offline:") or ConfigError (bad catalog / folder list) with one line.

    catalog.load_catalog() / find_model(key) / find_quant("REPO:QUANT") / drafts_for(model)   presets/models.toml
    listing.parse_ref(text) / list_repo(repo) / select_quant(listing, ref)                   a repo's GGUF quants
    remote.inspect_ref(text) -> ModelInfo       local path, HF-cache hit (offline too) or header over HTTP ranges
    download.download_model(ref, progress=fn, cancel=threading.Event()) -> DownloadResult   resumable, sha256-checked
    discovery.discover_local() -> [LocalModel]  HF cache (+LLAMA_CACHE), LM Studio, Ollama, add_folder()/remove_folder()
    cache.cached_model_path(ref)                a reference's local file if every part is in the HF cache
    connection.is_offline()
"""
