"""Data handling: readers, regular grids, missingness, scaling, windows, the HDF5 store."""
