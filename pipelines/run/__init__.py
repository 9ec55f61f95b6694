"""Running a loaded graph on Dask: the per-job runner, the task function, values between nodes, result fetching."""
