"""From a trained network to outputs and scores: searches (greedy, beam, sampling), teacher-forced
inference, ensembles, pair scores and the evaluation of a split.  Every routine takes batches of
``(tokens, lengths)`` and gives each example what it gives alone (P0)."""
