"""The generative LLM kind: Hugging Face causal language models, served behind the OpenAI API."""
