"""Many runs: Hydra overrides expanded into points (``expand``, ``points``), the code
snapshot they run (``snapshot``), their pre-created run directories (``submission``), the
hand-off to SLURM or local workers (``launcher``, ``slurm``), what runs on the node
(``jobs``), the sweep record and its operations (``ops``), and tuning (``tune``,
``tune_space``)."""
