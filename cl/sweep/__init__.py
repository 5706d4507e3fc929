"""Sweeps: a grid of runs from one config, on local processes or a Slurm cluster.

:mod:`cl.sweep.spec` parses the ``[sweep]`` table and expands it into runs with
deterministic directories; :mod:`cl.sweep.index` keeps the sweep's index and
reads each run's state from its directory; :mod:`cl.sweep.local` runs them as
local processes, :mod:`cl.sweep.slurm` as a Slurm job array through submitit;
:mod:`cl.sweep.progress` reports; :mod:`cl.sweep.launch` ties one ``cl sweep``
invocation together. Aggregating the runs (mean ± std over seeds) is
``cl compare SWEEP_DIR`` (:mod:`cl.reporting.compare`).
"""
