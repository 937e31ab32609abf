"""Tests that boot the experiment VM (qemu); they skip when no image is built."""
