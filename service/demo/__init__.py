"""The demo: irregular smartwatch recordings (``recordings``), the script that trains the
shipped demo model (``train``) and ``liquid demo``, which replays recordings into a running
service (``replay``)."""
