"""The aiohttp service: receipt intake, Portmone callbacks, the payload codec server for the Web UI,
health and metrics. Request authentication is described in docs/security.md."""
