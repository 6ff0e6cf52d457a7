"""What train.py runs besides its loop: the checks of its settings, the schedules, the per-epoch measurements
and files, and the WSOL training methods."""
