"""One lineage graph from source batch to prediction.

Edges are recorded as things happen (:mod:`icefloe.lineage.record`, a subscriber of the
happenings bus) and completed, when asked, from what the platform keeps anyway: predictions,
deployments, builds, MLflow model versions, Iceberg snapshot history and job runs
(:mod:`icefloe.lineage.assemble`). Node ids are ``kind:id`` strings
(:mod:`icefloe.lineage.nodes`); the graph, its walks and its JSON and DOT forms are pure
(:mod:`icefloe.lineage.graph`).
"""
