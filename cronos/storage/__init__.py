"""Models on disk: one-file checkpoints read with every check (``checkpoint``), their average
(``averaging``) and their export to CTranslate2 (``export``)."""
