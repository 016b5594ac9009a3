"""Call arguments, checked before a request exists: each bad one is a GatewayValidationError."""

from __future__ import annotations

import dataclasses
import functools
import json
import json.encoder
import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union

from .config import RetryPolicy, check_timeout, header_problem
from .errors import GatewayConfigError, GatewayValidationError
from .models import GatewayObject

__all__ = [
    "KNOWN_PARAMETERS",
    "ROLES",
    "CallOptions",
    "call_options",
    "check_input",
    "check_messages",
    "check_model",
    "check_parameter_names",
    "check_provider",
    "check_sampling",
    "encode_json",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ROLE_NAMES = ", ".join(sorted(ROLES))


# One encoder for every request: json.dumps with options would build a new one on each call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder() -> Optional[Callable[[Any], str]]:
    """The C encoder under ``_ENCODE``, made once. ``JSONEncoder.encode`` makes a new one (and
    the dict of containers it uses to find a circular reference) on every call: half the cost
    of encoding a small request. Without that dict a circular body recurses until Python's
    limit (a RecursionError, worded below). None where json has no C encoder."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder = make(
            None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
    except TypeError:  # another signature than CPython 3.8-3.13's
        return None
    join = "".join
    return lambda body: join(encoder(body, 0))


_ENCODE_FAST = _c_encoder() or _ENCODE


def encode_json(body: Dict[str, Any]) -> bytes:
    """The body as UTF-8 JSON; anything JSON or UTF-8 cannot carry is a GatewayValidationError."""
    try:
        text = _ENCODE_FAST(body)
    except (TypeError, ValueError) as exc:
        raise GatewayValidationError(f"the request cannot be sent as JSON: {exc}") from exc
    except RecursionError:
        raise GatewayValidationError(
            "the request cannot be sent as JSON: nested too deeply (or it holds itself)"
        ) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate: text decoded with errors="surrogateescape" (argv, os.fsdecode) or
        # read from JSON's "\udce9". The error names where it is, never the text around it.
        char = exc.object[exc.start]
        raise GatewayValidationError(
            f"{_where_unencodable(body)} holds the lone surrogate {char!r}, which cannot be sent "
            "as UTF-8 (text decoded with errors='surrogateescape'?)"
        ) from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where_unencodable(body: Dict[str, Any]) -> str:
    """Where the first string UTF-8 cannot encode sits: ``messages[0]['content']``."""
    stack: List[Tuple[Any, str]] = [(body, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if isinstance(key, str) and not _encodable(key):
                    return f"a key of {path}" if path else "a field name"
                stack.append((item, f"{path}[{key!r}]" if path else str(key)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return "the request"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise GatewayValidationError(
            f"model must be a non-empty string like 'openai/gpt-4o', got {model!r}"
        )
    return model


def check_messages(messages: Any) -> List[Dict[str, Any]]:
    if type(messages) is not list and (
        isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence)
    ):
        raise GatewayValidationError(
            "messages must be a list of {'role': ..., 'content': ...} mappings"
        )
    if not messages:
        raise GatewayValidationError("messages must not be empty")
    checked = []
    for position, message in enumerate(messages):
        if type(message) is not dict and isinstance(message, GatewayObject):
            message = message.to_dict()
        if type(message) is not dict and not isinstance(message, Mapping):
            raise GatewayValidationError(
                f"messages[{position}] must be a mapping, got {type(message).__name__}"
            )
        role = message.get("role")
        if role not in ROLES:
            raise GatewayValidationError(
                f"messages[{position}]['role'] must be one of {_ROLE_NAMES}, got {role!r}"
            )
        checked.append(message if isinstance(message, dict) else dict(message))
    return checked


def check_sampling(temperature: Any, max_tokens: Any, top_p: Any) -> None:
    if temperature is not None and not (_is_number(temperature) and 0 <= temperature <= 2):
        raise GatewayValidationError(
            f"temperature must be a number from 0 to 2, got {temperature!r}"
        )
    if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
        raise GatewayValidationError(f"top_p must be a number in (0, 1], got {top_p!r}")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0
    ):
        raise GatewayValidationError(f"max_tokens must be a positive int, got {max_tokens!r}")


def check_input(value: Any) -> Union[str, List[str]]:
    if isinstance(value, str):
        if not value:
            raise GatewayValidationError("input must not be empty")
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise GatewayValidationError("input must not be an empty list")
        for position, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise GatewayValidationError(f"input[{position}] must be a non-empty string")
        return list(value)
    raise GatewayValidationError(
        f"input must be a string or a list of strings, got {type(value).__name__}"
    )


def check_provider(provider: Any) -> str:
    """A name that travels as one path segment. Quoting keeps ``%`` and ``/`` inside it, but
    not ``.`` or ``..``: a transport removes those as dot segments (RFC 3986 section 5.2.4),
    and ``..`` would ask for ``/v1/models``."""
    if not isinstance(provider, str) or not provider.strip() or "/" in provider:
        raise GatewayValidationError(f"provider must be a name like 'openai', got {provider!r}")
    if provider in (".", ".."):
        raise GatewayValidationError(
            f"provider must be a name like 'openai', not the path segment {provider!r}"
        )
    try:
        provider.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GatewayValidationError(
            f"provider must be a name like 'openai': {provider!r} has a lone surrogate "
            f"at position {exc.start + 1}, which cannot be sent"
        ) from None
    return provider


class CallOptions(NamedTuple):
    """The per-call keywords that are not body fields (None: the client's setting)."""

    headers: Mapping[str, str]
    timeout: Optional[float]
    policy: RetryPolicy  # the client's, with this call's max_retries
    extra_body: Optional[Dict[str, Any]]
    fallbacks: Optional[Tuple[str, ...]] = None  # fallback_models=; None: the client's


_NO_HEADERS: Mapping[str, str] = {}
_OPTION_NAMES = frozenset(
    {"extra_headers", "timeout", "max_retries", "extra_body", "fallback_models"}
)


def call_options(params: Dict[str, Any], policy: RetryPolicy) -> CallOptions:
    """Pop and check the keywords that are not body fields: extra_headers, timeout,
    max_retries (an int >= 0: ``policy`` with it, for this call only) and extra_body (a
    mapping sent as is)."""
    if not params or _OPTION_NAMES.isdisjoint(params):
        return CallOptions(_NO_HEADERS, None, policy, None)
    extra = params.pop("extra_headers", None) or {}
    problem = header_problem(extra)
    if problem:
        raise GatewayValidationError(f"extra_headers {problem}")
    timeout = params.pop("timeout", None)
    try:
        timeout = check_timeout(timeout)
    except GatewayConfigError as exc:
        raise GatewayValidationError(str(exc)) from exc
    retries = params.pop("max_retries", None)
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise GatewayValidationError(f"max_retries must be an int >= 0, got {retries!r}")
    if retries is not None and retries != policy.max_retries:
        policy = dataclasses.replace(policy, max_retries=retries)
    extra_body = params.pop("extra_body", None)
    if extra_body is not None and not isinstance(extra_body, Mapping):
        raise GatewayValidationError(
            f"extra_body must be a mapping of body fields, got {type(extra_body).__name__}"
        )
    if extra_body is not None and "stream" in extra_body:
        raise GatewayValidationError(
            "extra_body must not hold 'stream': use chat_completion() or stream_chat_completion()"
        )
    fallbacks = params.pop("fallback_models", None)
    return CallOptions(
        dict(extra),
        timeout,
        policy,
        None if extra_body is None else dict(extra_body),
        None if fallbacks is None else check_models("fallback_models", fallbacks),
    )


def check_models(name: str, models: Any) -> Tuple[str, ...]:
    """A sequence of model names (fallbacks), each checked like ``model``."""
    if isinstance(models, (str, bytes, Mapping)) or not isinstance(models, Sequence):
        raise GatewayValidationError(
            f"{name} must be a list of model names like ['anthropic/claude-sonnet-4-20250514'], "
            f"got {type(models).__name__}"
        )
    return tuple(check_model(model) for model in models)


# -- parameter names ---------------------------------------------------------------------------

# Every keyword a call may pass as a body field without a second look, by where it comes from.
# A vendor's own spelling of a parameter (top_k, random_seed, stop_sequences) is never "corrected".
_KNOWN_BY_SOURCE = {
    "this client": "model messages input stream stream_options temperature max_tokens top_p "
    "extra_headers timeout max_retries extra_body fallback_models",
    "OpenAI chat": "audio frequency_penalty function_call functions logit_bias logprobs "
    "max_completion_tokens metadata modalities n parallel_tool_calls prediction presence_penalty "
    "prompt_cache_key prompt_cache_retention reasoning_effort response_format safety_identifier "
    "seed service_tier stop store tool_choice tools top_logprobs user verbosity "
    "web_search_options",
    "OpenAI embeddings and completions": "dimensions encoding_format best_of echo prompt suffix",
    "vLLM": "top_k min_p repetition_penalty length_penalty min_tokens stop_token_ids ignore_eos "
    "bad_words allowed_token_ids use_beam_search include_stop_str_in_output skip_special_tokens "
    "spaces_between_special_tokens truncate_prompt_tokens prompt_logprobs "
    "return_tokens_as_token_ids return_token_ids guided_json guided_regex guided_choice "
    "guided_grammar guided_decoding_backend guided_whitespace_pattern structural_tag "
    "structured_outputs add_generation_prompt continue_final_message add_special_tokens "
    "chat_template chat_template_kwargs documents mm_processor_kwargs priority request_id "
    "logits_processors cache_salt kv_transfer_params vllm_xargs",
    "llama.cpp, Ollama, TGI": "typical_p tfs_z repeat_penalty repeat_last_n n_predict n_probs "
    "n_keep mirostat mirostat_tau mirostat_eta dry_multiplier dry_base dry_allowed_length "
    "dry_penalty_last_n xtc_probability xtc_threshold top_n_sigma dynatemp_range "
    "dynatemp_exponent penalize_nl cache_prompt id_slot samplers grammar json_schema keep_alive "
    "think options format raw template num_ctx num_keep num_predict max_new_tokens "
    "min_new_tokens do_sample early_stopping watermark details return_full_text "
    "decoder_input_details top_n_tokens truncate stop_sequences",
    "Mistral, Anthropic": "safe_prompt safe_mode random_seed prompt_mode thinking system "
    "container mcp_servers context_management",
    "OpenRouter": "models route provider transforms plugins reasoning include_reasoning usage "
    "debug session_id trace top_a",
    "Groq, Together, Fireworks": "reasoning_format search_settings citation_options "
    "compound_custom exclude_domains include_domains disable_tool_validation safety_model "
    "context_length_exceeded_behavior prompt_truncate_len perf_metrics_in_response raw_output "
    "echo_last mirostat_lr mirostat_target top_n",
    "Perplexity, xAI, Qwen": "search_domain_filter search_recency_filter search_mode "
    "search_after_date_filter search_before_date_filter last_updated_after_filter "
    "last_updated_before_filter return_images return_related_questions disable_search "
    "enable_search_classifier search_parameters deferred enable_thinking thinking_budget "
    "enable_search search_options incremental_output vl_high_resolution_images "
    "translation_options",
    "LiteLLM, Azure, Gemini": "num_retries fallbacks context_window_fallbacks mock_response "
    "caching cache ttl tags guardrails drop_params additional_drop_params api_version "
    "base_model safety_settings cached_content labels data_sources enhancements "
    "user_security_context",
    "embeddings providers": "input_type task_type task title output_dimension output_dtype "
    "embedding_types embedding_type normalize truncation late_chunking prompt_name",
}
KNOWN_PARAMETERS = frozenset(name for names in _KNOWN_BY_SOURCE.values() for name in names.split())
# Never offered as a correction: the required arguments (a ``mode`` is not a misspelt ``model``).
_SUGGESTABLE = tuple(sorted(KNOWN_PARAMETERS - {"model", "messages", "input"}))


def check_parameter_names(params: Mapping[str, Any]) -> None:
    """Refuse a keyword that looks like a misspelt known parameter (``temprature``).

    The rule: a name in ``KNOWN_PARAMETERS`` passes; so does a name shorter than 4 characters.
    Any other name is refused when a known parameter lies within 1 edit of it (a name of 4 to 7
    characters) or 2 edits (8 or more); an edit inserts, deletes or replaces a character, or
    swaps two neighbours. Everything else passes through into the body; ``extra_body`` is never
    checked. A known name costs a set lookup; an unknown one is measured once per process.
    """
    for name in params:
        if name not in KNOWN_PARAMETERS and len(name) >= 4:
            likely = _likely_parameters(name)
            if likely:
                raise GatewayValidationError(
                    f"unknown parameter {name!r}: did you mean {likely}? (to send a field of "
                    f"that name as is, pass extra_body={{{name!r}: ...}})"
                )


@functools.lru_cache(maxsize=1024)
def _likely_parameters(name: str) -> Optional[str]:
    """The known parameters nearest ``name`` within the allowed distance, quoted, or None."""
    limit = 1 if len(name) < 8 else 2
    found: Dict[int, List[str]] = {}
    for known in _SUGGESTABLE:
        if abs(len(known) - len(name)) <= limit:
            distance = _edit_distance(name, known, limit)
            if distance <= limit:
                found.setdefault(distance, []).append(repr(known))
    if not found:
        return None
    nearest = found[min(found)]
    return nearest[0] if len(nearest) == 1 else ", ".join(nearest[:-1]) + " or " + nearest[-1]


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (Levenshtein plus neighbour swaps), capped at limit+1."""
    previous2: List[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]
