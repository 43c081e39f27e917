"""Optional integrations with other systems (each imports its dependency lazily).

- ``edgenet.integrations.ray``: ``Predictor`` for ``Dataset.map_batches`` and the
  ``edgenet batch --engine ray`` pipeline (needs the ``ray`` extra).
"""
