"""Studies: many runs of a config (the bAbI table, the EBGAN grid, the halting ensembles, the Hessian report),
above the Lightning layer: they run ``iclr17.cli`` and read the modules, datamodules and callbacks. Finished runs
go to a results ledger per study (``ledger``: JSON lines, one row per run, keys documented in ``ROW_KEYS``)."""
