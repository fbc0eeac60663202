"""Pruning: the paper's layer pruning and the baselines, behind one registry."""
