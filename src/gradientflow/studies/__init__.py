"""Studies: the demo, the canonical study behind `explain`, and paper reproductions."""
