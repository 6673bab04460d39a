"""Dialects: one module per vendor wire format, parsing requests and rendering answers."""
