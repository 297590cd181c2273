"""What a detector author needs: the access levels, the Detector contract, the Context a detector
reads, and the ScoreModel interface of a task's diffusion model. Kept light (no FAISS, no builders)."""
