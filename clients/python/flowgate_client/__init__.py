"""Python client SDK for Flowgate: request signing (this release); the
WebSocket and REST clients build on it."""

from flowgate_client.signing import Credentials, fix_logon_raw_data, rest_headers, ws_logon_params

__all__ = ["Credentials", "fix_logon_raw_data", "rest_headers", "ws_logon_params"]
