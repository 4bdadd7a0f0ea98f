"""Generation through any OpenAI-compatible server (vLLM, SGLang, `transformers serve`, ...).

Uses the official `openai` AsyncOpenAI client. Retries with backoff on 408/409/429/5xx,
timeouts and dropped connections are the client's own (`backend.max_retries`,
`backend.timeout_s`); a semaphore caps requests in flight (`backend.max_concurrency`).
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
variable named by `backend.api_key_env` and never logged or written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
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
                    raise MaltError(
                        f"{self.where}: the server answered HTTP {e.status_code} for model "
                        f"{model!r} ({_short(e)}){after}"
                    ) from None
                except openai.APITimeoutError:
                    raise MaltError(
                        f"{self.where}: no answer within backend.timeout_s="
                        f"{self.cfg.timeout_s}s, {attempts} times"
                    ) from None
                except openai.APIConnectionError as e:
                    raise MaltError(
                        f"{self.where}: could not reach the server ({_short(e)}) after "
                        f"{self.cfg.max_retries} retries"
                    ) from None
        raise MaltError(
            f"{self.where}: {attempts} replies in a row were not valid chat completions"
        )

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
    return [
        Completion(text, count, "length" if choice.finish_reason == "length" else "stop")
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


def _short(e: Exception) -> str:
    text = str(getattr(e, "message", None) or e)
    return text if len(text) <= 200 else text[:197] + "..."


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
