"""Session ids, unique across every gateway of the process: the high half of a
command record's tag names the session its events go back to, the low half
the request within it."""

import itertools

next_session_id = itertools.count(1).__next__
