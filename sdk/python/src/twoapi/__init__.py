"""twoapi: the Python client of the 2api LLM gateway.

    from twoapi import TwoAPI

    client = TwoAPI(api_key="2api_your_key")      # or TWOAPI_API_KEY; TWOAPI_BASE_URL
    response = client.chat("Hello!")
    print(response.content, response.provider, response.cost, response.request_id)

    for chunk in client.chat_stream("Tell me a story"):
        print(chunk, end="")
"""

from ._async_client import AsyncChatStream, AsyncTwoAPI
from ._base import __version__
from ._client import ChatStream, TwoAPI
from ._errors import (
    ERROR_CLASSES,
    TAXONOMY,
    AllCandidatesFailedError,
    AnalyticsUnavailableError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    InsufficientBalanceError,
    InternalServerError,
    InvalidJSONError,
    InvalidRequestError,
    LedgerUnavailableError,
    MethodNotAllowedError,
    ModelDoesNotSupportImagesError,
    ModelNotFoundError,
    ModelNotSupportedError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    TwoAPIError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamOverloadedError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
)
from ._types import ChatResponse, EmbeddingsResponse, Model, ToolCall, Usage

__all__ = [
    "ERROR_CLASSES",
    "TAXONOMY",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AllCandidatesFailedError",
    "AnalyticsUnavailableError",
    "AsyncChatStream",
    "AsyncTwoAPI",
    "AuthenticationError",
    "BadRequestError",
    "ChatResponse",
    "ChatStream",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "EmbeddingsResponse",
    "InsufficientBalanceError",
    "InternalServerError",
    "InvalidJSONError",
    "InvalidRequestError",
    "LedgerUnavailableError",
    "MethodNotAllowedError",
    "Model",
    "ModelDoesNotSupportImagesError",
    "ModelNotFoundError",
    "ModelNotSupportedError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ToolCall",
    "TwoAPI",
    "TwoAPIError",
    "UpstreamAuthError",
    "UpstreamError",
    "UpstreamOverloadedError",
    "UpstreamRateLimitedError",
    "UpstreamTimeoutError",
    "Usage",
    "__version__",
]
