"""The control plane's REST API (CML API v2 shapes) with API keys, roles and audit."""
