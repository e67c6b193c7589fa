"""Studies: many runs of a config (the bAbI table, the EBGAN grid, the halting ensembles, the Hessian report),
above the Lightning layer: they run ``iclr17.cli`` and read the modules, datamodules and callbacks."""
