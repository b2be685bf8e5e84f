"""GGUF repo of a release, made with llama.cpp's own converter and quantizer (llama-cpp-python 0.3.36).

Public interface (modules are imported lazily: `release.spec` needs only `tiers`):
  build.build_gguf(release, pruned_dir, out_dir, *, only, jobs, max_memory, work_dir, progress, log, root)
      -> list[Artifact]                       the build step (gguf:<BASELINE>, gguf:<TIER>, gguf:imatrix,
                                              gguf:ollama-files)
  checks.recipe_problems(release) -> list[Problem]   check-time rules (InputError material)
  checks.recipe_warnings(release) -> list[str]       type fallbacks a recipe will hit
  mixture.tensor_types(tensors, recipe, hparams, has_imatrix) -> dict   the type llama.cpp writes per tensor
  sizes.tier_size(tensors, hparams, recipe, has_imatrix) -> int         planned bytes of a tier
  metadata.release_metadata(release) -> GgufMetadata the release's general.* keys for the converter
  inspect.file_facts(paths, ...) -> dict             histogram, stored types, bpw, fallbacks, metadata checks
  runtime.Runner(path)                               libllama forward pass (smoke tests, verify gate)
  imatrix_stream.stream_imatrix(checkpoint, baseline, calibration, out)   importance matrix, layer by layer
                                              from the BF16 checkpoint (what a build makes)
  imatrix.compute_imatrix / load_imatrix             llama.cpp's own collector (the fidelity reference);
                                              reading, writing llama-imatrix's GGUF format
  ../toolchain.py: doctor(), ensure_toolchain(), install()
"""

GGUF_WORK = ".gguf-work"  # below dist/<release>/: GGUF files made but not published
