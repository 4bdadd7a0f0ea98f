"""Generation through any OpenAI-compatible server (vLLM, SGLang, `transformers serve`, ...).

Uses the official `openai` AsyncOpenAI client. Retries with backoff on 408/409/429/5xx,
timeouts and dropped connections are the client's own (`backend.max_retries`,
`backend.timeout_s`); a semaphore caps requests in flight (`backend.max_concurrency`).
The client's timeouts bound each network read, so a server that trickles a byte at a time
could hold a request for ever: each HTTP attempt, reply body included, is also cut at
`backend.timeout_s` (and then retried by the client like any other timeout).
One gap in the client is filled here: a 200 reply whose body is not valid JSON, or has no
message text, is not retried by the client (it only retries on status codes and transport
errors), so such replies are retried here within the same `max_retries` budget.
When the budget is spent the call ends in one MaltError sentence; shards already written
by the generate stage stay on disk.

Sampling `n`: a request asks for `n` choices. A server that ignores `n` (e.g. `transformers
serve`) returns one, and the backend then fans the rest out as single requests, remembering
that for later calls. Request j of a fan-out is seeded `derive_seed(seed, j)`, and the `n`
request is seeded `derive_seed(seed, 0)`, so a server that ignores `n` gives the same first
sample either way. Servers apply seeds as well as they can (vLLM per request; OpenAI best
effort; `transformers serve` sets a global torch seed, so concurrency breaks it).

Model names: a role's request names `adapter` when set (e.g. a LoRA module name given to
`vllm serve --lora-modules`), else `model`. The API key is read from the environment
variable named by `backend.api_key_env` and never logged or written: every error the
backend raises has the key and any `Bearer ...` token redacted, since a server may echo
request headers in its error text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from malt.backends.base import Completion, ModelSpec, SamplingParams, derive_seed
from malt.config import BackendConfig
from malt.errors import MaltError
from malt.records import Messages

_SEED_RANGE = 2**31  # many servers take a signed 32-bit seed


class _InvalidReply(Exception):
    """A 2xx reply we cannot use (bad JSON, no choices, no message text)."""


class OpenAIBackend:
    """The `openai` backend: async requests with a concurrency limit and bounded retries."""

    def __init__(self, cfg: BackendConfig, models: Mapping[str, ModelSpec]):
        try:
            import openai  # noqa: F401
        except ImportError:
            raise MaltError(
                "backend.name: openai needs the openai package (pip install 'malt[openai]')"
            ) from None
        self.cfg = cfg
        self.base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        key = os.environ.get(cfg.api_key_env)
        if not key and self.base_url is None:
            raise MaltError(
                f"backend.api_key_env: the environment variable {cfg.api_key_env} is not set"
            )
        # Local servers usually accept any key; the client insists on a non-empty one.
        self._api_key = key or "EMPTY"
        self._secret = key  # redacted from every error text
        self.models = {role: spec.adapter or spec.model for role, spec in models.items()}
        self.server_n: bool | None = None  # unknown until a reply shows it
        self.requests = 0

    @property
    def where(self) -> str:
        return self.base_url or "the OpenAI API"

    def generate(
        self,
        role: str,
        prompts: Sequence[Messages],
        params: SamplingParams,
        seeds: Sequence[int],
    ) -> list[list[Completion]]:
        """`params.n` completions per prompt, requested concurrently."""
        if role not in self.models:
            raise MaltError(f"no model configured for role {role!r}")
        return _run(self._generate(self.models[role], list(prompts), params, list(seeds)))

    async def _generate(self, model: str, prompts: list, params: SamplingParams, seeds: list[int]):
        from openai import AsyncOpenAI

        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key,
            max_retries=self.cfg.max_retries,
            timeout=self.cfg.timeout_s,
            http_client=deadline_http_client(self.cfg.timeout_s),
        )
        async with client:
            jobs = [
                asyncio.ensure_future(self._prompt(client, sem, model, m, params, s))
                for m, s in zip(prompts, seeds, strict=True)
            ]
            try:
                return await asyncio.gather(*jobs)
            except BaseException:
                for job in jobs:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
                raise

    async def _prompt(self, client, sem, model, messages, params: SamplingParams, seed: int):
        """The n completions of one prompt: one `n` request, fanned out if the server ignores n."""
        n = params.n
        if n == 1 or self.server_n is False:
            got: list[Completion] = []
        else:
            got = (await self._request(client, sem, model, messages, params, n, seed, 0))[:n]
            self.server_n = len(got) >= n
        rest = [
            self._request(client, sem, model, messages, params, 1, seed, j)
            for j in range(len(got), n)
        ]
        for more in await asyncio.gather(*rest):
            got.extend(more[:1])
        return got

    async def _request(self, client, sem, model, messages, params, n, seed, j) -> list[Completion]:
        """One chat completion request; MaltError once the retry budget is spent."""
        import openai

        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": derive_seed(seed, j) % _SEED_RANGE,
        }
        if n > 1:
            kwargs["n"] = n
        attempts = self.cfg.max_retries + 1
        for _ in range(attempts):
            async with sem:
                self.requests += 1
                try:
                    reply = await client.chat.completions.create(**kwargs)
                    return to_completions(reply)
                except _InvalidReply:
                    continue
                except (json.JSONDecodeError, openai.APIResponseValidationError):
                    continue
                except openai.APIStatusError as e:
                    retried = e.status_code in (408, 409, 429) or e.status_code >= 500
                    after = f" after {self.cfg.max_retries} retries" if retried else ""
                    raise self._error(
                        f"{self.where}: the server answered HTTP {e.status_code} for model "
                        f"{model!r} ({self._short(e)}){after}"
                    ) from None
                except openai.APITimeoutError:
                    raise self._error(
                        f"{self.where}: no answer within backend.timeout_s="
                        f"{self.cfg.timeout_s}s, {attempts} times"
                    ) from None
                except openai.APIConnectionError as e:
                    raise self._error(
                        f"{self.where}: could not reach the server ({self._short(e)}) after "
                        f"{self.cfg.max_retries} retries"
                    ) from None
        raise self._error(
            f"{self.where}: {attempts} replies in a row were not valid chat completions"
        )

    def _error(self, text: str) -> MaltError:
        """A MaltError whose text holds neither the API key nor any bearer token."""
        return MaltError(redact(text, self._secret))

    def _short(self, e: Exception) -> str:
        """An exception's text, redacted before it is cut (so no part of a key survives)."""
        text = redact(str(getattr(e, "message", None) or e), self._secret)
        return text if len(text) <= 200 else text[:197] + "..."

    def close(self) -> None:
        """Nothing to free: each call opens and closes its own client."""


def to_completions(reply: Any) -> list[Completion]:
    """Completions from a ChatCompletion; per-choice token counts are split from `usage`."""
    choices = getattr(reply, "choices", None)
    if not choices:
        raise _InvalidReply
    texts = []
    for choice in choices:
        message = getattr(choice, "message", None)
        if message is None or message.content is None:
            raise _InvalidReply
        texts.append(message.content)
    usage = getattr(reply, "usage", None)
    total = getattr(usage, "completion_tokens", None)
    counts = split_tokens(total, texts)
    prompt = getattr(usage, "prompt_tokens", None)
    prompt = prompt if isinstance(prompt, int) and prompt >= 0 else None
    return [
        Completion(text, count, "length" if choice.finish_reason == "length" else "stop", prompt)
        for choice, text, count in zip(choices, texts, counts, strict=True)
    ]


def split_tokens(total: int | None, texts: Sequence[str]) -> list[int]:
    """Share a reply's completion-token total across its choices by text length.

    Servers report one total for all `n` choices; the split is exact for n = 1 and an
    estimate otherwise. Without usage, a character count stands in.

    >>> split_tokens(10, ["abc", "abcdefg"])
    [3, 7]
    >>> split_tokens(None, ["ab", ""])
    [2, 0]
    """
    if total is None:
        return [len(t) for t in texts]
    chars = sum(len(t) for t in texts)
    if chars == 0:
        return [total // len(texts)] * len(texts)
    counts = [total * len(t) // chars for t in texts]
    counts[-1] += total - sum(counts)
    return counts


_BEARER = re.compile(r"(?i)\bbearer\s+(?!\[redacted\])[^\s\"',;)}\]]+")


def redact(text: str, secret: str | None) -> str:
    """`text` with the secret and any bearer token replaced by [redacted].

    >>> redact("rejected Authorization: Bearer sk-abc; key sk-abc", "sk-abc")
    'rejected Authorization: Bearer [redacted]; key [redacted]'
    """
    if secret:
        text = text.replace(secret, "[redacted]")
    return _BEARER.sub("Bearer [redacted]", text)


def deadline_http_client(deadline_s: float) -> Any:
    """The openai client's default HTTP client, each of whose requests (reply body included)
    ends within `deadline_s` with the HTTP library's own timeout error, which the client retries.
    """
    import openai

    base = openai.DefaultAsyncHttpxClient  # an httpx (openai 1.x) or httpx2 AsyncClient
    client_class = next(c for c in base.__mro__ if c.__name__ == "AsyncClient")
    http = sys.modules[client_class.__module__.split(".")[0]]

    class DeadlineClient(base):
        async def send(self, request: Any, **kwargs: Any) -> Any:
            try:
                return await asyncio.wait_for(super().send(request, **kwargs), deadline_s)
            except TimeoutError:
                raise http.ReadTimeout(
                    f"no complete reply within {deadline_s}s", request=request
                ) from None

    return DeadlineClient()


def _run(coro):
    """Run a coroutine to completion, also from code that already has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def create(
    cfg: BackendConfig,
    models: Mapping[str, ModelSpec],
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> OpenAIBackend:
    """Build the openai backend; the server owns model loading, so the flags are unused."""
    return OpenAIBackend(cfg, models)
