"""Event-driven image-classification training on pytorch-ignite."""
