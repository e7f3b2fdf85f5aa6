"""The names the SDK's telemetry uses, in one place, with the conventions they come from.

Semantic conventions followed (see docs/observability.md):

- GenAI: the OpenTelemetry GenAI semantic conventions repository
  (open-telemetry/semantic-conventions-genai, status "development", schema
  ``https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev``), which builds on
- the core semantic conventions v1.44.0 for ``http.*``, ``url.*``, ``server.*``, ``error.type``.

Everything under ``hostedai.*`` is this SDK's own.
"""

from __future__ import annotations

from typing import Final

SCOPE_NAME: Final = "hostedai_harpoon"
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev"
PROVIDER: Final = "hostedai"

# GenAI attributes.
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"

# HTTP, URL, server and error attributes (core conventions).
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
URL_FULL: Final = "url.full"
URL_TEMPLATE: Final = "url.template"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"

# The SDK's own attributes.
OPERATION: Final = "hostedai.operation"
ALLOCATION_ID: Final = "hostedai.allocation.id"
POOL: Final = "hostedai.pool"
MODEL: Final = "hostedai.model"
GPUS: Final = "hostedai.gpu.count"
GPU_TYPE: Final = "hostedai.gpu.type"
LEASE_STATE: Final = "hostedai.lease.state"
LEASE_STATE_FROM: Final = "hostedai.lease.state.from"
PHASE: Final = "hostedai.lease.phase"
RETRY_WAIT: Final = "hostedai.retry.wait"
ROUTE_TARGET: Final = "hostedai.route.target"
ROUTE_POLICY: Final = "hostedai.route.policy"
ROUTE_REASON: Final = "hostedai.route.reason"
ROUTE_SCORE: Final = "hostedai.route.score"
ROUTE_FALLBACKS: Final = "hostedai.route.fallbacks"
FAILOVER_FROM: Final = "hostedai.failover.from"
ATTEMPTS: Final = "hostedai.orchestrator.attempts"
CIRCUIT: Final = "hostedai.circuit.name"
CIRCUIT_FROM: Final = "hostedai.circuit.state.from"
CIRCUIT_TO: Final = "hostedai.circuit.state"

# Span events.
EVENT_RETRY: Final = "hostedai.retry"
EVENT_LEASE_STATE: Final = "hostedai.lease.transition"
EVENT_FAILOVER: Final = "hostedai.failover"
EVENT_CIRCUIT: Final = "hostedai.circuit.transition"
EVENT_EXCEPTION: Final = "exception"

# Operation names: for inference, the conventions' well-known value for prompt -> text.
OP_TEXT_COMPLETION: Final = "text_completion"
OP_CHAT: Final = "chat"
OP_ROUTE: Final = "route"

# Metrics.
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
HTTP_CLIENT_REQUEST_DURATION: Final = "http.client.request.duration"
ALLOCATION_ACTIVE: Final = "hostedai.allocation.active"
ALLOCATION_DURATION: Final = "hostedai.allocation.duration"
ALLOCATION_WAIT: Final = "hostedai.allocation.wait"
ALLOCATION_RELEASE_FAILURES: Final = "hostedai.allocation.release_failures"
ALLOCATION_GPU_SECONDS: Final = "hostedai.allocation.gpu_seconds"
ALLOCATION_COST: Final = "hostedai.allocation.cost"
ROUTE_DECISIONS: Final = "hostedai.route.decisions"
FAILOVERS: Final = "hostedai.failovers"
RETRIES: Final = "hostedai.retries"
CIRCUIT_TRANSITIONS: Final = "hostedai.circuit.transitions"

# Advisory bucket boundaries: the conventions' for their instruments, ours for our own.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
LEASE_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
WAIT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# The switch for prompt and completion text on spans (off unless set to one of these).
CAPTURE_CONTENT_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CAPTURE_CONTENT_ON: Final = frozenset({"true", "span_only", "span_and_event"})

# The switch for a readable log on stderr.
LOG_ENV: Final = "HOSTED_AI_LOG"
