"""Blender writers of the core results: stacks of image planes (planes.py) and, from the animation helper, motion."""
