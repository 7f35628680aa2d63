"""Writing one run: the ``@runlab.launch`` decorator, its lifecycle (status, heartbeat,
signals), the logger, the run directory, the environment capture, atomic files, the ranks
of a distributed job (``distributed``) and a tuning trial's hook (``trial``).

Nothing here imports :mod:`runlab.sweep`, and a run's files on disk are the only interface
to :mod:`runlab.results`, with one exception: when the logger closes, it has the reader's
own parser write the columnar twin of each metrics file, so that the twin is exactly what
the reader would have built from the JSON lines."""
