"""The campaign's rules: scoring and ranking, traffic lights, digests shared by jobs and commands.

Imports db/ only (and the plain config model for its type)."""
