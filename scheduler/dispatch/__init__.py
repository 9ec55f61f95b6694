"""Running jobs: the dispatcher, recovery of interrupted jobs, publishing outputs, intermediates, ETAs, the Dask cluster."""
