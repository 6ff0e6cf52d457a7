"""Plumbing: the command line, safe files and checkpoints, devices, processes, run folders, dataset files.

Nothing here is the science (networks, CAM, datasets, metrics: the top-level modules); these are the
parts that make a run fail well and never lose work. They import no top-level module.
"""
