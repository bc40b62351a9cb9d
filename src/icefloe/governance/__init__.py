"""Governance: users and projects, namespace grants, access tracking."""
