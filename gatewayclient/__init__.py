"""gatewayclient: sync and async clients for OpenAI-compatible AI gateways."""
