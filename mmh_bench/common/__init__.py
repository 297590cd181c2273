"""Vocabulary that task/, evaluation/, mitigation/ and leaderboard/ all speak: where a result file
sits, the FPR targets, provenance and the C_T statistic. Modules here import nothing above
``api/`` and ``retrieval/``, so every package can use them without an import circle."""
