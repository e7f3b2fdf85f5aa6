"""The ``harpoon`` command: the emulator, the API's state, held GPUs, inference, benchmarks.

```
harpoon emulator [--port PORT] [--error-rate RATE ...]   serve the emulator on 127.0.0.1
harpoon health | pools [--pool POOL]                     what the service says
harpoon allocations list [--all-states]                  what is holding GPUs
harpoon allocations release ID... | --all                release GPUs nobody released
harpoon infer TEXT [--target NAME] [--stream]            route a prompt through the Orchestrator
harpoon bench [NAME ...]                                 run the source tree's benchmarks
```

The API commands read ``HOSTED_AI_BASE_URL``, ``HOSTED_AI_API_KEY`` and ``HOSTED_AI_POOL_ID``;
``--base-url`` and ``--pool`` override the first and the last. The key is only read from the
environment, so that it never lands in a shell history or a process list. Configuration
errors are worded for the command line (``--base-url``, the variables), not the SDK's
Python arguments. Every API command checks the configured pool first. With ``--json`` a
failure is a JSON object on stdout (``{"error": {"type", "message", "exit_code"}}``) instead
of a line on stderr.
"""

from ._parser import main

__all__ = ["main"]
