"""Integrations with frameworks. Each lives in a module of its own that imports its framework
when it is itself imported; ``import gatewayclient`` imports none of them."""
