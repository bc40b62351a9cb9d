"""OpenLineage events for what happens on the platform (off by default).

The subscriber (:func:`icefloe.openlineage.emitter.subscriber`) turns each
:class:`~icefloe.happenings.Happening` into an OpenLineage RunEvent (:mod:`.events`, pure,
with icefloe's ML facets from :mod:`.facets` whose JSON schemas ship in ``schemas/``) and
hands it to a file or HTTP transport (:mod:`.transport`) chosen by the settings.
"""
