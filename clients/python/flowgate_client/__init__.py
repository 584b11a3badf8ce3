"""Python client SDK for Flowgate: request signing, the async WebSocket
client (`flowgate_client.ws`) and the REST client (`flowgate_client.rest`)."""

from flowgate_client.rest import RestClient
from flowgate_client.signing import Credentials, fix_logon_raw_data, rest_headers, ws_logon_params
from flowgate_client.ws import FlowgateError, ReplayUnavailable, WsClient

__all__ = ["Credentials", "FlowgateError", "ReplayUnavailable", "RestClient", "WsClient",
           "fix_logon_raw_data", "rest_headers", "ws_logon_params"]  # fmt: skip
