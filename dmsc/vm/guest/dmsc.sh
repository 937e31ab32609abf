#!/bin/sh
# /usr/local/bin/dmsc in the experiment VM: the project's command, from the shared checkout.
exec /opt/dmsc/venv/bin/python3 -m dmsc "$@"
