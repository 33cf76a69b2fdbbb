"""The standalone moderngl game scene: procedural world, engine pass, reference look, demo."""
