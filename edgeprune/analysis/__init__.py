"""Layer analysis for layer pruning: units, representations, similarity, segmentation, importance, plans."""
