"""``ComplexityPolicy``: simple prompts to the small tier, complex ones to the large tier.

The complexity score is the sum of cheap features, each between 0 and its weight, capped
at 1:

==========  ======  =====================================================================
feature     weight  what raises it
==========  ======  =====================================================================
length      0.14    the prompt's length (logarithmic, saturating at 8,000 characters)
reasoning   0.36    cue words, strong (prove, derive, rigorous, "show that") to weak (why,
                    explain), and "step by step"
steps       0.12    multi-step structure: first, then, finally, steps, several lines
code        0.30    code words, strong (implement, algorithm, refactor) to weak (function,
                    python), and code punctuation (brackets, semicolons, backticks)
math        0.30    math words, strong (solve, integral, theorem) to weak (compute, prime),
                    and operators
questions   0.06    more than one question mark
output      0.10    a ``max_tokens`` above 256, and cues such as "detailed" or "essay"
==========  ======  =====================================================================

Each piece of evidence for a feature gives part of what the feature has left, so one
strong cue of reasoning, code or math already gives most of its weight: "Prove that the
square root of 2 is irrational" crosses the default threshold of 0.35 on its own, while
one weak cue ("Why is the sky blue?") does not. Everything but the length is read from
the first 192 and the last 64 characters, where instructions sit, so a long document
costs no more to score than a short one. Above the threshold a request goes to the
largest tier, otherwise to the smallest. ``calibrate()`` sets the threshold from a sample
of prompts so that a chosen share of them goes large.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import attrs

from .._checks import check_iterable, check_number, check_text
from .._exceptions import ConfigurationError
from ._base import RouteDecision, RouteRequest, TargetState, Tier, _fraction
from ._order import _by_tier, _figures

__all__ = ["ComplexityPolicy"]

_HEAD = 192
_TAIL = 64
_INVERSE_LOG_LONG_PROMPT = 1 / math.log1p(8000)
_DEFAULT_MAX_TOKENS = 256

_FEATURES = ("length", "reasoning", "steps", "code", "math", "questions", "output")
_SMALL, _LARGE = Tier.SMALL, Tier.LARGE
_LENGTH, _REASONING, _STEPS, _CODE, _MATH, _QUESTIONS, _OUTPUT = range(7)

# Cue words by feature and strength: a strong cue ("prove", "implement", "integral") is
# worth more evidence than a weak one ("why", "function", "compute").
_CUE_WORDS = {
    (_REASONING, 3): """prove proves proving proof proofs derive derives deriving derivation
        rigorous rigorously formally deduce disprove counterexample""",
    (_REASONING, 2): """analyze analyse analysis compare contrast evaluate critique assess
        tradeoff tradeoffs justify implications argue hypothesis architecture optimize
        optimise debug diagnose synthesize fallacy fallacies""",
    (_REASONING, 1): """why explain explaining reason reasoning infer consequences strategy
        design""",
    (_STEPS, 2): """step steps stage stages phase phases outline breakdown procedure""",
    (_STEPS, 1): """first second third then next finally afterwards multi plan""",
    (_CODE, 2): """implement implementation refactor algorithm algorithms compile parser regex
        recursion recursive unittest concurrency""",
    (_CODE, 1): """code function functions class def python javascript typescript rust java
        golang sql api bug script return import async struct const lambda mutex cache
        concurrent""",
    (_MATH, 2): """equation equations integral derivative matrix eigenvalue eigenvalues
        eigenvectors theorem lemma corollary solve converge converges convergence polynomial
        inequality induction recurrence probability limit""",
    (_MATH, 1): """compute calculate series prime primes vector modulo integer integers
        logarithm geometry algebra calculus arithmetic""",
    (_OUTPUT, 1): """detailed comprehensive essay thorough thoroughly report elaborate depth
        exhaustive extensive article chapter""",
}
_BITS = 12
_MASK = (1 << _BITS) - 1
# Units per point of cue strength: a weak cue counts as much as this many lines, brackets
# or operators (a semicolon in prose is weak evidence of code).
_STEP_UNITS, _CODE_UNITS, _MATH_UNITS = 4, 8, 3
_UNITS = {_STEPS: _STEP_UNITS, _CODE: _CODE_UNITS, _MATH: _MATH_UNITS}


def _points(feature: int, points: int) -> int:
    """``points`` of strength for ``feature``, in its units, packed: 12 bits a feature.

    The length has no bits, so a sum of strengths is a machine-sized int (which ``sum()``
    adds fast) unless a prompt piles up eight or more output cues.
    """
    return points * _UNITS.get(feature, 1) << _shift(feature)


def _shift(feature: int) -> int:
    """Where ``feature``'s bits start in a packed strength."""
    return _BITS * (feature - 1)


# Phrases that ask for a worked answer, by their first word. A phrase is looked for in the
# lower-cased window only when its first word is there.
_PHRASES: dict[bytes, tuple[tuple[bytes, int], ...]] = {
    b"step": ((b"step by step", _points(_REASONING, 2)),),
    b"show": (
        (b"show that", _points(_REASONING, 3)),
        (b"show how", _points(_REASONING, 2)),
        (b"show your", _points(_REASONING, 2)),
    ),
    b"walk": ((b"walk me through", _points(_REASONING, 2)),),
}
# The strengths of all the cue words found add up in one ``sum()``; a phrase's first word
# adds nothing on its own.
_CUE_STRENGTH: dict[bytes, int] = dict.fromkeys(_PHRASES, 0)
_CUE_STRENGTH.update(
    (word.encode(), _points(feature, points))
    for (feature, points), words in _CUE_WORDS.items()
    for word in words.split()
)
_CUES = frozenset(_CUE_STRENGTH)
_STRENGTH_OF = _CUE_STRENGTH.__getitem__
_STEPS_SHIFT, _CODE_SHIFT, _MATH_SHIFT, _OUTPUT_SHIFT = map(_shift, (_STEPS, _CODE, _MATH, _OUTPUT))
_CUES_OF: tuple[frozenset[bytes], ...] = tuple(
    frozenset(
        word.encode()
        for (group, _), words in _CUE_WORDS.items()
        if group == feature
        for word in words.split()
    )
    for feature in range(len(_FEATURES))
)


def _words_table() -> bytes:
    """Lower-cases ASCII letters and turns every other ASCII byte into a space."""
    table = bytearray(range(256))
    for byte in range(128):
        if 0x41 <= byte <= 0x5A:
            table[byte] = byte + 0x20
        elif not 0x61 <= byte <= 0x7A:
            table[byte] = 0x20
    return bytes(table)


def _symbols_tables() -> tuple[bytes, bytes]:
    """A table mapping each punctuation class to one byte, and the bytes to delete."""
    classes = {b"?": b"?", b"\n": b"\n", b"{}[]();`": b"{", b"=^+*\\$<>": b"="}
    table = bytearray(range(256))
    kept = set()
    for members, mark in classes.items():
        for byte in members:
            table[byte] = mark[0]
            kept.add(byte)
    return bytes(table), bytes(byte for byte in range(256) if byte not in kept)


def _curve(weight: float, keep: float, units_per_step: int, size: int) -> tuple[float, ...]:
    """``weight * (1 - keep ** (units / units_per_step))`` for units 0 .. size - 1.

    Each step of evidence keeps ``keep`` of what the feature had left to give, so a feature
    saturates at its weight however much evidence piles up.
    """
    return tuple(weight * (1.0 - keep ** (units / units_per_step)) for units in range(size))


_WORDS_TABLE = _words_table()
_SYMBOLS_TABLE, _NOT_SYMBOLS = _symbols_tables()
_QUESTION, _NEWLINE, _BRACKET, _OPERATOR = b"?\n{="
_CAP = 127
_LENGTH_WEIGHT, _OUTPUT_WEIGHT = 0.14, 0.10
# A point of reasoning strength keeps 0.55 of what the feature had left: a strong cue
# (3 points) gives 0.30 of its 0.36, a weak one (1 point) 0.16.
_REASONING_CURVE = _curve(0.36, 0.55, 1, _CAP + 1)
_STEPS_CURVE = _curve(0.12, 0.6, _STEP_UNITS, _CAP + 1)
_CODE_CURVE = _curve(0.30, 0.45, _CODE_UNITS, _CAP + 1)
_MATH_CURVE = _curve(0.30, 0.5, _MATH_UNITS, _CAP + 1)
_QUESTIONS_CURVE = (0.0, 0.0, 0.02, 0.04, 0.06)
_OUTPUT_CURVE = _curve(_OUTPUT_WEIGHT, 0.5, 1, _CAP + 1)


def _analyse(prompt: str, max_tokens: int) -> tuple[tuple[float, ...], frozenset[bytes], int]:
    """Each feature's weighted contribution, the cue words found, and the '?'s."""
    size = len(prompt)
    window = prompt if size <= _HEAD + _TAIL else f"{prompt[:_HEAD]} {prompt[-_TAIL:]}"
    data = window.encode("utf-8", "surrogatepass")
    symbols = data.translate(_SYMBOLS_TABLE, _NOT_SYMBOLS)
    words = data.translate(_WORDS_TABLE)
    found = _CUES.intersection(words.split())
    strength = 0
    if found:  # most prompts carry a cue or two; plain ones spare the lookups
        strength = sum(map(_STRENGTH_OF, found))
        for first in found.intersection(_PHRASES):
            for phrase, points in _PHRASES[first]:
                if phrase in words:
                    strength += points
    if symbols:  # likewise prose without a '?', a line break, a bracket or an operator
        questions = symbols.count(_QUESTION)
        lines = symbols.count(_NEWLINE)
        brackets = symbols.count(_BRACKET)
        operators = symbols.count(_OPERATOR)
    else:
        questions = lines = brackets = operators = 0
    reasoning = strength & _MASK
    steps = (strength >> _STEPS_SHIFT & _MASK) + (lines - 1 if lines else 0)
    code = (strength >> _CODE_SHIFT & _MASK) + brackets
    maths = (strength >> _MATH_SHIFT & _MASK) + operators
    asked = strength >> _OUTPUT_SHIFT & _MASK
    output = _OUTPUT_CURVE[asked if asked < _CAP else _CAP]
    if max_tokens > _DEFAULT_MAX_TOKENS:
        requested = math.log2(max_tokens / _DEFAULT_MAX_TOKENS) / 4
        output += (_OUTPUT_WEIGHT - output) * (requested if requested < 1.0 else 1.0)
    length = math.log1p(size) * _INVERSE_LOG_LONG_PROMPT
    contributions = (
        _LENGTH_WEIGHT * length if length < 1.0 else _LENGTH_WEIGHT,
        _REASONING_CURVE[reasoning if reasoning < _CAP else _CAP],
        _STEPS_CURVE[steps if steps < _CAP else _CAP],
        _CODE_CURVE[code if code < _CAP else _CAP],
        _MATH_CURVE[maths if maths < _CAP else _CAP],
        _QUESTIONS_CURVE[questions if questions < 4 else 4],
        output,
    )
    return contributions, found, questions


# Descriptions of the cue words of one feature, kept: the same few combinations of cue
# words come up again and again. Each cue word belongs to one feature, so the words
# alone are the key.
_WORDS_DESCRIBED: dict[frozenset[bytes], str] = {}


def _drivers(
    contributions: tuple[float, ...],
    found: frozenset[bytes],
    prompt: str,
    max_tokens: int,
    questions: int,
) -> str:
    """The two features that raised the score most, each with what raised it."""
    first = second = -1
    first_value = second_value = 0.0
    for index, value in enumerate(contributions):
        if value > first_value:
            second, second_value = first, first_value
            first, first_value = index, value
        elif value > second_value:
            second, second_value = index, value
    if first < 0:
        return "an empty prompt"
    top = _describe(first, found, prompt, max_tokens, questions)
    if second < 0:
        return top
    return f"{top}; {_describe(second, found, prompt, max_tokens, questions)}"


def _describe(
    feature: int, found: frozenset[bytes], prompt: str, max_tokens: int, questions: int
) -> str:
    """A feature as a reader wants it in a reason: its name and what raised it."""
    if feature == _LENGTH:  # no cue words: spare the set operation
        return f"length {len(prompt)} chars"
    if feature == _QUESTIONS:
        return f"{questions} questions"
    words = found & _CUES_OF[feature]
    if words:
        described = _WORDS_DESCRIBED.get(words)
        if described is None:
            if len(_WORDS_DESCRIBED) >= 4096:
                _WORDS_DESCRIBED.clear()
            described = f"{_FEATURES[feature]}: {b', '.join(sorted(words)).decode()}"
            _WORDS_DESCRIBED[words] = described
        return described
    return f"max_tokens {max_tokens}" if feature == _OUTPUT else _FEATURES[feature]


def _score(request: object, name: str) -> float:
    """The score of a ``RouteRequest`` or a bare prompt, which ``name`` held."""
    if isinstance(request, RouteRequest):
        return min(1.0, sum(_analyse(request.prompt, request.max_tokens)[0]))
    if type(request) is not str:
        raise ConfigurationError(
            f"{name}: expected a prompt (a string or a RouteRequest), got {request!r}"
        )
    return min(1.0, sum(_analyse(check_text(request, name), _DEFAULT_MAX_TOKENS)[0]))


def _shown_threshold(policy: ComplexityPolicy) -> str:
    threshold = policy.threshold
    if isinstance(threshold, int | float):
        return f"{threshold:.2f}"
    return ""  # not a number: the field's validator, run next, says so


@attrs.frozen
class ComplexityPolicy:
    """Routes prompts scoring above ``threshold`` to the largest tier, others to the smallest.

    The score (``score()``) is in [0, 1]; the module docstring lists its features. When the
    wanted tier has no healthy target the nearest tier is used and the reason says so; when
    the request's ``tier`` hint left only another tier, the reason says that instead. The
    decision's ``scores`` hold the complexity, the threshold and each feature's
    contribution. ``calibrate()`` returns a copy with the threshold set from your prompts.
    """

    threshold: float = attrs.field(default=0.35, validator=_fraction)
    # The threshold as a reason shows it, written once rather than on every decision.
    _shown_threshold: str = attrs.field(
        init=False, default=attrs.Factory(_shown_threshold, takes_self=True), repr=False, eq=False
    )

    def score(self, request: RouteRequest | str) -> float:
        """The complexity of a request (or of a bare prompt asking for 256 tokens), in [0, 1]."""
        return _score(request, "request")

    def calibrate(
        self, prompts: Iterable[RouteRequest | str], large_share: float = 0.3
    ) -> ComplexityPolicy:
        """A copy whose threshold sends about ``large_share`` of ``prompts`` to the large tier.

        The threshold is the ``1 - large_share`` quantile of the prompts' scores (midway
        between the scores either side of it), the way RouteLLM calibrates its routers to a
        share of strong-model calls. Calibrate on prompts like the ones you will route.
        """
        check_number(large_share, "large_share", 0, 1)
        items = check_iterable(prompts, "prompts", "prompts (strings or RouteRequests)")
        scores = sorted(_score(prompt, "prompts") for prompt in items)
        if not scores:
            raise ConfigurationError("prompts must hold at least one prompt to calibrate on")
        small = len(scores) - round(large_share * len(scores))
        below = scores[small - 1] if small > 0 else 0.0
        above = scores[small] if small < len(scores) else 1.0
        return attrs.evolve(self, threshold=(below + above) / 2)

    def __call__(self, request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        """Send ``request`` to the smallest or the largest tier by its complexity."""
        prompt, max_tokens, threshold = request.prompt, request.max_tokens, self.threshold
        contributions, found, questions = _analyse(prompt, max_tokens)
        score = sum(contributions)
        if score > 1.0:
            score = 1.0
        large = score > threshold
        ranked = _by_tier(candidates, large)
        chosen = ranked[0].target
        drivers = _drivers(contributions, found, prompt, max_tokens, questions)
        wanted = _LARGE if large else _SMALL
        shown_score, shown_threshold = f"{score:.2f}", self._shown_threshold
        if shown_score == shown_threshold and score != threshold:
            shown_score, shown_threshold = _figures((score, threshold))
        comparison = (
            f"complexity {shown_score} {'>' if large else '<='} threshold {shown_threshold} "
        )
        # ``_value_`` is ``value`` without the enum descriptor's cost, on the hot path.
        if chosen.tier is wanted:
            reason = f"{comparison}({drivers}): {wanted._value_} tier, {chosen.name}"
        elif request.tier is chosen.tier:
            reason = (
                f"{comparison}({drivers}): wants the {wanted._value_} tier but the request's "
                f"tier hint narrowed the candidates to the {chosen.tier._value_} tier; "
                f"{chosen.name}"
            )
        else:
            reason = (
                f"{comparison}({drivers}): wants the {wanted._value_} tier but no "
                f"{wanted._value_}-tier target is healthy; falling back to {chosen.name} "
                f"({chosen.tier._value_} tier)"
            )
        length, reasoning, steps, code, maths, many_questions, output = contributions
        scores = {
            "complexity": score,
            "threshold": threshold,
            "length": length,
            "reasoning": reasoning,
            "steps": steps,
            "code": code,
            "math": maths,
            "questions": many_questions,
            "output": output,
        }
        if len(ranked) == 2:
            return RouteDecision(chosen, reason, scores, (ranked[1].target,))
        return RouteDecision(chosen, reason, scores, tuple([state.target for state in ranked[1:]]))
