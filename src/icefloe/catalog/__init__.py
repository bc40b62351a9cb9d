"""The model catalog: every registered model with its card (owner, description, tags, use
case, risk level, free metadata), where each version is deployed and how it is doing, its
last alerts, and search across models, tables and columns.

- :mod:`icefloe.catalog.cards`: the ``model_cards`` table, with every field checked;
- :mod:`icefloe.catalog.entries`: entries read from the registry, the platform DB and the
  supervisor;
- :mod:`icefloe.catalog.search`: ranked matching (pure).
"""
