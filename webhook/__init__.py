"""The aiohttp service: receipt intake, Portmone callbacks, health and metrics."""
