"""The long reliability suite (``make reliability``): real servers under load while their
session store stalls and crashes; see :mod:`reliability.__main__`."""
