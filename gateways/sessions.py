"""Session ids, unique across every gateway of the process: the high half of a
command record's tag names the session its events go back to, the low half
the request within it; and the peer of a new connection."""

import itertools

next_session_id = itertools.count(1).__next__


def peer_ip(transport) -> str | None:
    """The address of a connection's peer; None when it reset before the
    connection was handed over (it is closed then, with nothing to answer)."""
    peer = transport.get_extra_info("peername")
    return None if peer is None else peer[0]
