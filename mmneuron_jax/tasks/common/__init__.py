"""Helpers shared by several studies: model families, MMNeuron-style record sources, deactivation runs, tables."""
