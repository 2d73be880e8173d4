"""lib/: kernel library code (kobject uevents)."""
