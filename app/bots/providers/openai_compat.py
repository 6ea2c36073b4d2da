"""The ``openai`` provider: any OpenAI-compatible server, streamed.

Uses the official ``openai`` package's ``AsyncOpenAI`` with ``stream=True``
against ``OPENAI_BASE_URL`` (api.openai.com when unset; vLLM, Ollama or
llama.cpp's ``/v1`` when set). The library's own retries are off; this module
retries connection errors, timeouts, 408/429 and 5xx a bounded number of times,
but only before the first token: once text went out, a failure ends the reply.
``timeout`` bounds the wait for the response and for every chunk after it.
Cancelling the iterating task (or closing the generator) closes the HTTP
response, which closes the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, cast

import openai
from openai import AsyncOpenAI

from . import Prompt, ProviderError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

    from app.settings import Settings

__all__ = ["OpenAIProvider"]

log = logging.getLogger("lastra.bots.openai")


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.25,
    ) -> None:
        self._client = client
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        key = settings.openai_api_key
        if not key:
            if not settings.openai_base_url:
                raise ValueError(
                    "LASTRA_AI_PROVIDER=openai needs OPENAI_API_KEY "
                    "(or OPENAI_BASE_URL for a local server that needs no key)"
                )
            key = "unused"  # Ollama, llama.cpp and vLLM accept any key by default
        client = AsyncOpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.ai_timeout,
            max_retries=0,  # retried here, and only before the first token
        )
        return cls(
            client, settings.ai_model, timeout=settings.ai_timeout, retries=settings.ai_retries
        )

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
        model = prompt.bot.model or self.model
        messages = cast("list[ChatCompletionMessageParam]", prompt.messages())
        attempt = 0
        while True:
            sent = False
            try:
                async with asyncio.timeout(self.timeout):
                    upstream = await self._client.chat.completions.create(
                        model=model,
                        messages=messages,
                        temperature=prompt.temperature,
                        stream=True,
                    )
                async with upstream:
                    chunks = upstream.__aiter__()
                    while True:
                        async with asyncio.timeout(self.timeout):
                            chunk = await anext(chunks, None)
                        if chunk is None:
                            break
                        delta = _text(chunk)
                        if delta:
                            sent = True
                            yield delta
                if not sent:
                    raise ProviderError(f"{model} sent an empty reply")
                return
            except ProviderError:
                raise
            except (TimeoutError, openai.OpenAIError) as exc:
                if sent or attempt >= self.retries or not _retryable(exc):
                    raise ProviderError(_describe(exc, self.timeout, sent)) from exc
                attempt += 1
                log.info(
                    "retrying %s (attempt %d): %s",
                    model,
                    attempt + 1,
                    _describe(exc, self.timeout, sent),
                )
                await asyncio.sleep(min(2.0, self.backoff * 2 ** (attempt - 1)))

    async def close(self) -> None:
        await self._client.close()


def _text(chunk: ChatCompletionChunk) -> str:
    if not chunk.choices:
        return ""
    return chunk.choices[0].delta.content or ""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _describe(exc: BaseException, timeout: float, sent: bool) -> str:
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return f"the model did not answer within {timeout:g} s"
    if isinstance(exc, openai.APIConnectionError):
        return "the model's stream broke off" if sent else "cannot reach the model server"
    if isinstance(exc, openai.APIStatusError):
        detail = _message(exc.body) or exc.message
        return f"the model server answered {exc.status_code}: {detail}"[:300]
    return f"the model failed: {exc}"[:300]


def _message(body: object) -> str | None:
    if isinstance(body, dict):
        inner: Any = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return None
