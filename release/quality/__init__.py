"""Quality of every quantized artifact, measured by the tool from the built files.

    quality:reference   the GGUF baseline's next-token log-probabilities on the held-out text (gguf.py)
    quality:<TIER>      a GGUF tier against that reference, through libllama (gguf.py)
    quality:nvfp4       NVFP4A16 against the BF16 checkpoint, through transformers (nvfp4.py)

The held-out text is cut into windows as llama-perplexity does (windows.py); the figures — KL divergence
(mean, 99th percentile), top-1 agreement, perplexities — are computed in divergence.py and become
`facts.quality` of what they measure (facts.py). The GGUF card's chart is drawn in chart.py; estimate.py
says what a measurement costs for the job plan.
"""

QUALITY_WORK = ".quality"  # below dist/<release>/: quality measurements (facts of what they measure)
