"""Training the generator: fine-tuning on recordings of a user's game (finetune)."""
