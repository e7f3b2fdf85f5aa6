"""The SDK against a hostile server, and the memory and breaker defects found that way."""
