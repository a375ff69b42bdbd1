"""Diagnose a user's own model: per-layer verdicts, the first layer where the gradient collapses or
blows up, its likely cause, ranked fixes, and alerts while training (`watch`)."""
