"""The adapters: WebSocket and the legacy SSE+POST endpoints, both thin over the hub."""
