"""`make bench`: Borne's figures printed side by side with their baselines."""
