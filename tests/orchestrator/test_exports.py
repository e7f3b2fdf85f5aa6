"""The Orchestrator's names: public from the package root (lazily) and the subpackage."""

from __future__ import annotations

import pickle
import subprocess
import sys

import hostedai_harpoon as harpoon
import hostedai_harpoon.orchestrator as orchestrator


def test_the_orchestrator_names_are_the_same_objects_from_the_root_and_the_subpackage() -> None:
    for name in set(orchestrator.__all__) - {"Verdict"}:  # a type alias, for annotations
        assert getattr(harpoon, name) is getattr(orchestrator, name), name
        assert name in harpoon.__all__, name
    assert repr(harpoon.Orchestrator) == "<class 'hostedai_harpoon.orchestrator.Orchestrator'>"
    assert "Orchestrator" in dir(harpoon)


def test_importing_the_package_does_not_import_the_orchestrator() -> None:
    code = (
        "import sys, hostedai_harpoon; "
        "print('hostedai_harpoon.orchestrator' in sys.modules, 'asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_new_errors_sit_in_the_tree_and_survive_pickling() -> None:
    # "no target could take it" and "every attempt failed" are handled apart.
    assert not issubclass(harpoon.AllAttemptsFailedError, harpoon.NoRouteError)
    assert issubclass(harpoon.AllAttemptsFailedError, harpoon.HostedAIError)
    assert issubclass(harpoon.BudgetExceededError, harpoon.HostedAIError)
    assert issubclass(harpoon.OrchestratorClosedError, harpoon.HostedAIError)
    attempt = harpoon.Attempt(
        harpoon.DEFAULT_TARGETS[0], "routed", "alloc_1", harpoon.APITimeoutError("slow"), 1.0
    )
    error = harpoon.AllAttemptsFailedError("every attempt failed", attempts=(attempt,))
    copy = pickle.loads(pickle.dumps(error))
    assert copy.attempts[0].target.name == "gemma-3-270m"
    assert str(copy) == "every attempt failed"
    budget = pickle.loads(pickle.dumps(harpoon.BudgetExceededError("spent", budget=1, spent=2)))
    assert (budget.budget, budget.spent) == (1, 2)
