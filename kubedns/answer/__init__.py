"""The answer path: query bytes in, reply bytes out, no I/O (forwarding is awaited outside)."""
