"""The model lifecycle: train, gate, register, decide, write, build, publish."""
