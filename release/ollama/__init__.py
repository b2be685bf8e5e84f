"""Ollama tags: built byte-exactly as `ollama create` does, pushed over the registry protocol, verified.

Entry points (details in README.md beside this file):
- build:    build_tags(section, gguf_files, out_dir, pipeline_dir=…, hash_cache=…) -> list[TagBuild];
            load_builds(out_dir); artifacts(builds, registry=…, name=…, dist_release=…)
- publish:  plan_ollama(out_dir, registry=…) -> {artifact id: [RemoteFile]};
            publish_ollama(out_dir, registry=…, insecure=…, key_path=…, via_cli=…, mount_from=…, on_progress=…)
- registry: RegistryClient(url, insecure=…, key_path=…); push_tags; verify_tags; plan_tags; pull_tag; remote_tags
- checks:   check_warnings(section, family=…, gguf_files=…, hf_config=…) -> list[str]
- cli_path: publish_via_cli(builds, model=…, registry=…, latest=…) (the real `ollama` binary)
"""
