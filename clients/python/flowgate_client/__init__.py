"""Python client SDK for Flowgate: request signing and the async WebSocket
client (`flowgate_client.ws`)."""

from flowgate_client.signing import Credentials, fix_logon_raw_data, rest_headers, ws_logon_params
from flowgate_client.ws import FlowgateError, WsClient

__all__ = ["Credentials", "FlowgateError", "WsClient", "fix_logon_raw_data", "rest_headers",
           "ws_logon_params"]  # fmt: skip
