"""The HTTP side: the ASGI app and its routes."""
