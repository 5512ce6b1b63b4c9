"""The ``llm`` section: limits of the generative LLM replicas (continuous batching, prompt and
completion lengths) and whether prompts and completions may reach the audit log."""

from __future__ import annotations

from pydantic import Field, model_validator

from inhouse.config.sections import Section


class LLMSettings(Section):
    """Generation limits of one LLM replica; a model's own context window bounds them too."""

    max_sequences: int = Field(
        8, ge=1, le=1024, description="Sequences one replica generates at once (more queue)."
    )
    max_prompt_tokens: int = Field(
        2048, ge=1, description="Longest prompt accepted (the model's context also bounds it)."
    )
    max_tokens: int = Field(512, ge=1, description="The most tokens a request may ask for.")
    default_max_tokens: int = Field(
        128, ge=1, description="Tokens generated when a request gives no max_tokens."
    )
    log_content: bool = Field(
        False, description="Write prompts and completions to the audit log (admin only)."
    )
    threads: int | None = Field(
        None, ge=1, description="Torch CPU threads of a replica (default: torch's choice)."
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> LLMSettings:
        if self.default_max_tokens <= self.max_tokens:
            return self
        if "default_max_tokens" in self.model_fields_set:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) is above "
                f"max_tokens ({self.max_tokens})"
            )
        self.default_max_tokens = self.max_tokens  # only max_tokens was lowered: follow it
        return self
