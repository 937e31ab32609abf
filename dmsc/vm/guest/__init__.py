"""Files installed in, or run inside, the experiment VM (see dmsc/vm/image.py)."""
