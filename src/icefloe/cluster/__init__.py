"""Several control planes as one platform: nodes, their leases and what each one holds."""
