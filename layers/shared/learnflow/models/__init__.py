"""Pydantic models of the API (bodies, query strings, objects) and the domain objects."""
