"""Thin asyncio transports: bytes in, ``Responder.respond``, bytes out."""
