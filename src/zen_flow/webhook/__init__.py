"""Admission webhooks: pure review functions, the aiohttp server, TLS certificate reload."""
