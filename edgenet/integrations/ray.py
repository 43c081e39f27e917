"""edgenet on Ray Data: ``Predictor`` for ``Dataset.map_batches`` in your own pipelines,
``ship_model`` to put a model file into the object store, and ``run_ray`` (the engine of
``edgenet batch --engine ray``). Implemented in ``edgenet.batch.ray_engine``; see its
docstring and docs/BATCH.md. Ray is imported only when used (``pip install 'edgenet[ray]'``).
"""
from ..batch.ray_engine import REMOTE_CACHE_DIR, Predictor, run_ray, ship_model

__all__ = ["Predictor", "REMOTE_CACHE_DIR", "run_ray", "ship_model"]
