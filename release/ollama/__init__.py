"""Ollama tags: built byte-exactly as `ollama create` does, pushed over the registry protocol, verified.

Public entry points (see each module):
- build:    build_tags(section, gguf_files, out_dir, pipeline_dir=…) -> list[TagBuild]; load_builds(out_dir)
- registry: RegistryClient(url, insecure=…, key_path=…); push_tags(…); verify_tags(…); plan_tags(…); pull_tag(…)
- checks:   check_warnings(section, …) -> list[str]
- cli_path: publish_via_cli(…) (the real `ollama` binary)
"""
