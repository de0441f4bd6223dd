"""Training: the data the loop draws from, the loop itself, checkpoints and the run folder's log."""
