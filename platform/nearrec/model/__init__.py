"""The ranking model, pure: user vectors, collaborative models, fusion and MMR. No I/O."""
