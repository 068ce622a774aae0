"""Reference servers of the service load benchmark (bench/service_load.py). NOT the product:
they exist only to be measured beside it."""
