"""The native core, compiled with Cython: decimal conversion, wire records, the
command/event ring, and the matching and pre-trade risk engine."""
