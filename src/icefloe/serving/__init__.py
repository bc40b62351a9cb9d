"""Serving: build input schemas and request validation, model scoring for endpoints."""
