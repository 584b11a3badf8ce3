"""Authentication, API keys, rate limits and abuse protection, shared by the
REST, WebSocket and FIX gateways (the contract is API.md)."""

from gateways.auth.errors import AuthError

__all__ = ["AuthError"]
