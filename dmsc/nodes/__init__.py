"""The host programs of the emulated network: SG and SR (``RouterNode``), pods (``Pod``); the SPA
program is ``dmsc spa serve``."""
