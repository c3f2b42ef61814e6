"""The neuron atlas (collect, site)."""
