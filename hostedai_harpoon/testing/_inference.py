"""Deterministic fake inference: the same model and prompt always give the same answer.

The answer's words and natural length come from a PRNG seeded with a hash of the model
and the prompt; the latency follows a per-model profile (the large model is slower).
"""

from __future__ import annotations

import functools
import hashlib
import math
import random

import attrs

__all__ = ["Completion", "ModelProfile", "complete"]

# fmt: off
_VOCABULARY = (
    "the", "a", "of", "to", "and", "in", "is", "that", "for", "on", "with", "as", "it", "by",
    "this", "be", "are", "from", "at", "or", "an", "was", "which", "model", "GPU", "pool",
    "token", "latency", "memory", "tensor", "batch", "kernel", "cache", "layer", "weight",
    "signal", "answer", "result", "value", "system", "request", "stream", "vector", "graph",
    "matrix", "parallel", "compute", "fast", "small", "large", "deep", "sparse", "dense",
    "quick", "careful", "simple", "clear", "precise", "stable", "runs", "holds", "keeps",
    "makes", "shows", "finds", "uses", "gives", "reads", "writes", "moves", "builds", "checks",
    "because", "therefore", "however", "then", "also", "only", "often", "still", "again",
    "here", "there", "now",
)
# fmt: on


@attrs.frozen
class ModelProfile:
    """How a model answers: its natural answer length range and its latency."""

    min_tokens: int
    max_tokens: int
    base_ms: float
    per_token_ms: float


_PROFILES = {
    "gemma-3-270m": ModelProfile(8, 120, base_ms=15.0, per_token_ms=2.0),
    "qwen3-30b-a3b": ModelProfile(16, 400, base_ms=120.0, per_token_ms=12.0),
}
_FALLBACK_PROFILE = ModelProfile(8, 200, base_ms=50.0, per_token_ms=5.0)


@attrs.frozen
class Completion:
    """One answer: its text split into the deltas a stream sends, and its accounting."""

    deltas: tuple[str, ...]
    finish_reason: str
    input_tokens: int
    latency_ms: float

    @property
    def text(self) -> str:
        """The whole answer."""
        return "".join(self.deltas)

    @property
    def output_tokens(self) -> int:
        """How many tokens the answer has."""
        return len(self.deltas)


def _natural_words(model: str, prompt: str) -> tuple[str, ...]:
    digest = hashlib.sha256(f"{model}\x00{prompt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    profile = _PROFILES.get(model, _FALLBACK_PROFILE)
    length = rng.randint(profile.min_tokens, profile.max_tokens)
    return tuple(rng.choices(_VOCABULARY, k=length))


@functools.lru_cache(maxsize=4096)
def complete(model: str, prompt: str, max_tokens: int, stop: tuple[str, ...]) -> Completion:
    """The deterministic answer of ``model`` to ``prompt``.

    The answer ends at its natural length (``"stop"``), at ``max_tokens`` (``"length"``)
    or just before the first stop sequence (``"stop"``, without the space before it),
    whichever comes first. An empty stop sequence never matches.
    """
    words = _natural_words(model, prompt)
    text = " ".join(words[:max_tokens])
    finish_reason = "length" if len(words) > max_tokens else "stop"
    cuts = [index for index in (text.find(s) for s in stop if s) if index >= 0]
    if cuts:
        # A stop sequence that starts a word leaves the space before it: drop it, so the
        # text has exactly the words (tokens) counted.
        text = text[: min(cuts)].rstrip(" ")
        finish_reason = "stop"
    pieces = text.split(" ") if text else []
    deltas = tuple(piece if i == 0 else " " + piece for i, piece in enumerate(pieces))
    profile = _PROFILES.get(model, _FALLBACK_PROFILE)
    return Completion(
        deltas=deltas,
        finish_reason=finish_reason,
        input_tokens=max(1, math.ceil(len(prompt) / 4)),
        latency_ms=round(profile.base_ms + profile.per_token_ms * len(deltas), 3),
    )
