"""Generative LLMs (kind ``llm``): instruction-tuned causal language models copied onto the
enterprise's own disks, imported from a Hugging Face directory or a GGUF file.

A version (architecture ``hf_causal_lm``) is one artifact: the float weights and the tokenizer
(``tokenizer.json`` as a uint8 buffer, as text models carry theirs), encrypted together. Its
spec holds the Hugging Face config, the chat template, the generation config, the end-of-sequence
token ids and the context length (:mod:`inhouse.kinds.llm.model`). Parts: ``model.py``
(``build``), ``importing.py`` (``IMPORTING``; GGUF conversion in ``gguf.py``), ``loaded.py``
(``load_llm``: a runnable model and its tokenizer).
"""

LLM_ARCH = "hf_causal_lm"  # the architecture (``spec["kind"]``) of every LLM version
