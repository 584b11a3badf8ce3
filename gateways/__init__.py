"""Protocol gateways: thin codecs that turn REST, WebSocket and FIX traffic into engine commands."""
