"""Solvers: the ways capgate answers tasks."""
