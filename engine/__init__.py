"""The runtime around the native core: the typed command and event vocabulary,
venue configuration, and the `Engine` facade that gateways and tools use."""
