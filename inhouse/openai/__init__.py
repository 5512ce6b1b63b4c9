"""The OpenAI wire format, without Ray: request bodies parsed into
:class:`~inhouse.kinds.generating.GenerateCall` (:mod:`.requests`), answers and streamed
chunks (:mod:`.responses`), and errors in OpenAI's shape (:mod:`.errors`).

The ingress (``serve/openai_routes.py``) serves ``POST /v1/chat/completions``,
``POST /v1/completions`` and ``GET /v1/models`` with these, so the official ``openai`` client
works unchanged with an inhouse token as its API key.
"""

from inhouse.openai.errors import error_body, is_openai_path, openai_status
from inhouse.openai.requests import WireRequest, parse_chat, parse_completion
from inhouse.openai.responses import DONE, Answer, model_card, models_list, sse

__all__ = [
    "DONE",
    "Answer",
    "WireRequest",
    "error_body",
    "is_openai_path",
    "model_card",
    "models_list",
    "openai_status",
    "parse_chat",
    "parse_completion",
    "sse",
]
