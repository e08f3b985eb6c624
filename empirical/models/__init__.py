"""Model families with a width multiplier and a depth knob, built from named blocks.

A thin and a wide member of one family share depth and block names, so that a block of the
thin model can be paired with the block of the same name in the wide model.
"""
