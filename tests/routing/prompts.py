"""A generator of varied, realistic prompts, for calibration and property tests.

The mix: greetings and small talk, short factual questions, rewriting and translation,
document summaries (some long), code tasks (some with code), math problems, multi-step
reasoning and proof requests, and writing requests of various lengths. Every prompt is
assembled from random parts, so lengths and contents vary and exact repeats are rare.

``SHOULD_GO_LARGE`` and ``SHOULD_GO_SMALL`` are hand-written prompts labelled with the tier
a person would send them to, for checking ``ComplexityPolicy`` against.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def _listed(text: str, separator: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(separator))


NAMES = _listed("Ada Bob Chen Dara Emil Fatima Gus Hana Ivan Jo Kemal Lena Mira Nils Omar Priya")
TOPICS = _listed(
    "climate policy|the French revolution|black holes|sourdough baking|remote work|"
    "supply chains|the immune system|jazz history|urban cycling|quantum computing|"
    "coral reefs|medieval trade routes|sleep science|electric cars|open source licensing|"
    "the stock market|volcanoes|language learning|honeybees|the printing press",
    "|",
)
COUNTRIES = _listed("France Peru Japan Kenya Norway Chile Egypt Canada Vietnam Poland Ghana Spain")
LANGUAGES = _listed("Python JavaScript Rust Go Java TypeScript SQL C++ Kotlin Ruby")
WORDS = _listed(
    "the of and to in is that for it as with was on be by this are or at from an which "
    "data team result value system user process report service market customer project "
    "budget quarter growth risk plan meeting network server release feature sprint test "
    "support account revenue policy contract partner region product design review update"
)


def _sentence(rng: random.Random, low: int = 6, high: int = 18) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice(".....!;")


def _paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def greeting(rng: random.Random) -> str:
    """Hello, thanks, small talk."""
    opener = rng.choice(["Hi", "Hello", "Hey", "Good morning", "Good evening", "Hi there", "Yo"])
    parts = [opener]
    if rng.random() < 0.6:
        parts.append(rng.choice(NAMES))
    text = " ".join(parts) + rng.choice(["!", ",", ".", "!!", ""])
    tail = rng.choice(
        [
            "",
            " How are you?",
            " Thanks for the help yesterday.",
            " Hope your day is going well.",
            " What's up?",
            " Nice to meet you.",
            f" Greetings from {rng.choice(COUNTRIES)}.",
            " Thank you so much!",
        ]
    )
    return text + tail


def factual(rng: random.Random) -> str:
    """A short question with a short answer."""
    return rng.choice(
        [
            f"What is the capital of {rng.choice(COUNTRIES)}?",
            f"Who is the author of a famous book about {rng.choice(TOPICS)}?",
            f"How many {rng.choice(['grams', 'meters', 'seconds'])} are in a "
            f"{rng.choice(['kilogram', 'kilometer', 'day'])}?",
            f"Define {rng.choice(TOPICS)} in one sentence.",
            f"When was {rng.choice(TOPICS)} first studied?",
            f"What language is spoken in {rng.choice(COUNTRIES)}?",
            f"Give me a fun fact about {rng.choice(TOPICS)}.",
            f"Is {rng.choice(TOPICS)} related to {rng.choice(TOPICS)}?",
        ]
    )


def rewrite(rng: random.Random) -> str:
    """Translate or rewrite a short text."""
    task = rng.choice(
        [
            f"Translate to {rng.choice(['French', 'German', 'Spanish', 'Japanese'])}:",
            "Rewrite this email to sound more formal:",
            "Fix the grammar in this paragraph:",
            "Make this shorter:",
            "Turn this into a friendly reminder:",
        ]
    )
    return f"{task} {_paragraph(rng, rng.randint(1, 5))}"


def summary(rng: random.Random) -> str:
    """Summarise a document, from a paragraph to several pages."""
    kind = rng.choice(["article", "meeting notes", "report", "email thread", "transcript"])
    instruction = rng.choice(
        [
            f"Summarize the following {kind} in a few bullet points.",
            f"Give me a TL;DR of this {kind}.",
            f"Read this {kind} and list the action items.",
            f"Summarize this {kind}:",
        ]
    )
    document = "\n\n".join(
        _paragraph(rng, rng.randint(2, 8)) for _ in range(rng.randint(1, rng.choice([3, 8, 20])))
    )
    return f"{instruction}\n\n{document}"


def code(rng: random.Random) -> str:
    """Write, fix or explain some code."""
    language = rng.choice(LANGUAGES)
    name = (
        rng.choice(["parse", "merge", "load", "count", "render", "sync"])
        + "_"
        + rng.choice(["rows", "users", "events", "orders", "config", "tokens"])
    )
    snippet = "\n".join(
        f"    {rng.choice(['x', 'total', 'item', 'acc'])} = {rng.choice(['x', 'acc'])} "
        f"{rng.choice(['+', '*', '-'])} {rng.randint(1, 99)};"
        for _ in range(rng.randint(2, 14))
    )
    return rng.choice(
        [
            f"Write a {language} function {name} that reads a file and returns a dict.",
            f"Fix the bug in this {language} code:\n```\ndef {name}(x):\n{snippet}\n"
            f"    return x\n```",
            f"Explain what this code does:\n```\n{snippet}\n```",
            f"Implement {name} in {language} with unit tests and handle errors.",
            f"Refactor this {language} class to use async I/O:\n```\nclass Worker {{\n"
            f"{snippet}\n}}\n```",
        ]
    )


def math_problem(rng: random.Random) -> str:
    """Arithmetic to calculus."""
    a, b, c, n = (rng.randint(2, 99) for _ in range(4))
    return rng.choice(
        [
            f"What is {a} * {b}?",
            f"Solve {a}x + {b} = {c}.",
            f"Compute the integral of x^{n % 7 + 1} from 0 to {a}.",
            f"Find the derivative of {a}x^3 + {b}x^2 - {c}.",
            f"Is {a * b + 1} a prime number?",
            f"Calculate the probability of rolling {n % 11 + 2} with two dice.",
            f"Find the eigenvalues of the matrix [[{a}, {b}], [{c}, {n}]].",
        ]
    )


def reasoning(rng: random.Random) -> str:
    """Multi-step analysis, design and proof requests."""
    topic, other = rng.choice(TOPICS), rng.choice(TOPICS)
    steps = "\n".join(
        f"{i}. {rng.choice(['Analyze', 'Compare', 'Evaluate', 'Explain', 'Outline'])} "
        f"{_sentence(rng, 4, 10).lower()}"
        for i in range(1, rng.randint(2, 7))
    )
    return rng.choice(
        [
            f"Prove step by step that the sum of the first {a} odd numbers is a perfect "
            f"square, then derive a closed form and explain why induction works here."
            for a in [rng.randint(3, 999)]
        ]
        + [
            f"Compare {topic} and {other}. First analyze the tradeoffs, then justify which "
            f"matters more, and finally outline the implications.\n{steps}",
            f"Design an architecture for a service about {topic}. Explain the tradeoffs and "
            f"evaluate the risks step by step.\n{steps}",
            f"Why does {topic} affect {other}? Reason carefully and critique the common "
            f"arguments. {_paragraph(rng, rng.randint(0, 4))}",
            f"Prove rigorously that there are infinitely many primes, then derive a bound "
            f"on the gap between consecutive primes below {rng.randint(10, 10_000)}.",
            f"Please plan a {rng.randint(2, 12)}-week project on {topic}. {steps}",
        ]
    )


def writing(rng: random.Random) -> str:
    """Creative or long-form writing."""
    topic = rng.choice(TOPICS)
    return rng.choice(
        [
            f"Write a short poem about {topic}.",
            f"Write a haiku about {topic}.",
            f"Write a detailed essay on {topic} with an introduction and a conclusion.",
            f"Write a comprehensive report on {topic} for {rng.choice(NAMES)}.",
            f"Write a story about {rng.choice(NAMES)} and {topic}, about "
            f"{rng.randint(1, 20) * 100} words long.",
            f"Draft a blog post about {topic}. {_paragraph(rng, rng.randint(0, 3))}",
        ]
    )


KINDS: tuple[tuple[Callable[[random.Random], str], float], ...] = (
    (greeting, 0.12),
    (factual, 0.16),
    (rewrite, 0.10),
    (summary, 0.14),
    (code, 0.14),
    (math_problem, 0.10),
    (reasoning, 0.14),
    (writing, 0.10),
)


PREFIXES = ("", "", "", "Please: ", "Quick question. ", "Could you help? ", "Hey, ", "Task: ")


def _framed(rng: random.Random, prompt: str) -> str:
    """The prompt as people send it: sometimes a preamble, sometimes some context after."""
    prefix = rng.choice(PREFIXES)
    if rng.random() < 0.5:
        return prefix + prompt
    context = " ".join(_sentence(rng, 3, 14) for _ in range(rng.randint(1, 3)))
    return f"{prefix}{prompt} {rng.choice(['Context:', 'Note:', 'FYI', 'Background:'])} {context}"


def corpus(count: int, seed: int) -> list[str]:
    """``count`` prompts of every kind, reproducibly from ``seed``."""
    rng = random.Random(seed)
    makers = [maker for maker, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    prompts = []
    for _ in range(count):
        maker = rng.choices(makers, weights)[0]
        prompt = maker(rng)
        prompts.append(prompt if maker is greeting else _framed(rng, prompt))
    return prompts


# Prompts a person would route without hesitating, written by hand. They read like
# requests people send, not like the scorer's word lists: many carry no cue word at all,
# and several small ones carry a cue word in a harmless sense ("step", "first", "why").
SHOULD_GO_LARGE: tuple[str, ...] = (
    "Prove that the square root of 2 is irrational, step by step.",
    "Prove that there are infinitely many primes.",
    "Derive the formula for the sum of a geometric series.",
    "Prove by induction that 1 + 2 + ... + n = n(n+1)/2.",
    "Show that every bounded monotone sequence of real numbers converges.",
    "Show that there is no largest prime number.",
    "Give a rigorous proof that the composition of two injective functions is injective.",
    "Prove that the sum of the angles of a triangle is 180 degrees.",
    "Explain the proof of Fermat's little theorem.",
    "Solve the recurrence T(n) = 2T(n/2) + n and prove the bound.",
    "Solve the system 2x + 3y = 7 and x - y = 1, showing every step.",
    "Find all real solutions of x^4 - 5x^2 + 4 = 0 and justify each step.",
    "Compute the integral of x*e^x from 0 to 1 and explain the method.",
    "Evaluate the limit of sin(x)/x as x approaches 0 and justify each step.",
    "Find the eigenvalues and eigenvectors of the matrix [[2, 1], [1, 2]].",
    "A bag has 3 red and 5 blue balls. Two are drawn without replacement. What is the "
    "probability that both are red? Show your reasoning.",
    "A train leaves at 3pm at 60 mph and a second one leaves the same station at 4pm at "
    "80 mph. When does the second catch up? Work it out step by step.",
    "Think step by step: a bat and a ball cost $1.10 in total and the bat costs $1 more "
    "than the ball. How much does the ball cost?",
    "How many ways can 8 rooks be placed on a chessboard so that no two attack each other? "
    "Explain your reasoning.",
    "Walk me through deriving Bayes' theorem from the definition of conditional probability.",
    "What is the time complexity of Dijkstra's algorithm with a binary heap? Derive it.",
    "Implement a thread-safe LRU cache in Rust with unit tests.",
    "Write a Python function that finds the longest palindromic substring in O(n^2) time "
    "and explain its complexity.",
    "Implement binary search in Go and prove that it terminates.",
    "Write a parser for arithmetic expressions with operator precedence in TypeScript.",
    "Write a SQL query that returns each customer's three most recent orders, and explain "
    "how it works.",
    "Debug this function; it should reverse a linked list but loses every node:\n"
    "```\ndef reverse(head):\n    prev = None\n    while head:\n        head.next = prev\n"
    "        prev = head\n        head = head.next\n    return prev\n```",
    "Refactor this callback code to async/await and handle errors:\n"
    "```\nfs.readFile(path, (err, data) => { if (err) throw err; parse(data, cb); });\n```",
    "Design the database schema and REST API for a multi-tenant booking system and explain "
    "the tradeoffs.",
    "Compare quicksort and mergesort and analyze their worst-case complexity.",
    "Explain step by step why the halting problem is undecidable.",
    "Analyze the causes of the 2008 financial crisis and evaluate which policy responses worked.",
    "Plan the migration of a monolith to microservices: first list the risks, then the "
    "phases, and finally a rollback strategy.",
    "Write a detailed essay on the ethics of artificial intelligence, with an introduction, "
    "three arguments and a conclusion.",
    "Critique this argument and point out the logical fallacies: everyone I know likes the "
    "plan, so the plan must be good, and anyone who disagrees is being negative.",
    "Is 2^31 - 1 prime? Show how you would check it.",
    "Prove that the product of two odd integers is odd.",
    "Show that the harmonic series diverges.",
    "Derive the quadratic formula by completing the square.",
    "Solve 3x^2 - 12x + 9 = 0 and check both roots.",
    "Calculate the expected number of coin flips until two heads in a row, explaining each step.",
    "Write a function in C that detects a cycle in a linked list, and prove it is correct.",
    "Implement Dijkstra's shortest path algorithm in Java with a priority queue.",
    "Explain why the central limit theorem holds, step by step, with the key assumptions.",
    "Compare the CAP tradeoffs of Cassandra and PostgreSQL for a payments ledger and "
    "recommend one.",
    "Design a rate limiter for a distributed API gateway and justify the algorithm you pick.",
    "Prove that a graph is bipartite if and only if it has no odd cycle.",
    "Find the derivative of x^x and explain each step of the calculation.",
    "Optimize this SQL query and explain why it is slow:\n```\nSELECT * FROM orders o "
    "WHERE o.customer_id IN (SELECT id FROM customers WHERE country = 'PE');\n```",
    "Evaluate the strengths and weaknesses of nuclear power as a climate strategy, with evidence.",
    "Using induction, prove that 2^n > n for every natural number n.",
)
SHOULD_GO_SMALL: tuple[str, ...] = (
    "Hi!",
    "Hello, how are you today?",
    "Good morning! Hope you slept well.",
    "Thanks, that helped a lot.",
    "Thank you so much for your help!",
    "Nice to meet you, I'm Priya.",
    "Good night!",
    "What's the capital of France?",
    "What time is it in Tokyo right now?",
    "Who wrote Pride and Prejudice?",
    "How many days are in a leap year?",
    "Who won the World Cup in 2018?",
    "What year did the Berlin Wall fall?",
    "How tall is Mount Everest?",
    "What does HTTP stand for?",
    "Is a tomato a fruit?",
    "What is 7 times 8?",
    "Convert 5 miles to kilometers.",
    "Translate 'good morning' into Spanish.",
    "How do you say thank you in Japanese?",
    "What's a synonym for happy?",
    "What's the plural of mouse?",
    "Spell necessary for me.",
    "Fix the typo: teh cat sat on teh mat.",
    "Rewrite this to sound friendlier: Send me the file now.",
    "Summarize in one line: the meeting moved to Thursday at 3pm.",
    "Tell me a joke.",
    "Write a haiku about autumn.",
    "Give me a fun fact about octopuses.",
    "Recommend a good science fiction movie.",
    "Suggest a name for my new puppy.",
    "List three colors of the rainbow.",
    "Why did the chicken cross the road?",
    "What's the first day of spring this year?",
    "What is a prime number?",
    "Which key opens the help menu in Excel?",
    "Thanks for explaining that!",
    "Can you remind me what the boiling point of water is?",
    "Hey, what's up?",
    "Thanks a ton!",
    "What's the capital of Kenya?",
    "How many legs does a spider have?",
    "Who painted the Mona Lisa?",
    "What is 12 plus 30?",
    "Translate 'cat' into German.",
    "Give me a word that rhymes with moon.",
    "What's the opposite of cold?",
    "Tell me a fun fact about penguins.",
    "Write a two-line poem about rain.",
    "When does summer start in Australia?",
    "What does CPU stand for?",
    "Good afternoon, hope the week is going well.",
    "Which planet is closest to the sun?",
)
