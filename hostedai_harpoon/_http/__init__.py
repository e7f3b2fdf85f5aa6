"""HTTP: how each call of the API becomes requests, and how their answers come back.

- ``_steps``: the step vocabulary (``Call``, ``Send``, ``Reply``, ``Sleep``) of plans and flows;
- ``_api``: the API's operations on the wire, one builder each (paths, bodies, "already gone");
- ``_plan``: THE retry loop: attempts, the breaker, the deadline, parsing (``Planner``);
- ``_errors``, ``_body``, ``_sse``: reading answers, bodies and event streams within bounds;
- ``_drivers``: the only I/O, sync and async; ``_clock``: the one seam for time.
"""
