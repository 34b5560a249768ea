"""Storing results: atomic file writes (`files`), provenance (`provenance`), the run-folder lock (`lock`)."""
