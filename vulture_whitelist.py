"""Names vulture reports unused that a caller's signature fixes: `make lint` passes this file to it.

Each is a parameter a framework passes by name or position: pydantic-settings calls
settings_customise_sources with keyword arguments, http.server calls log_message(format, *args),
and the context-manager protocol calls __exit__(exc_type, exc, tb).
"""

dotenv_settings  # lb/control/settings.py: Settings.settings_customise_sources
file_secret_settings  # lb/control/settings.py: Settings.settings_customise_sources
format  # lb/lab/servers.py: _BackendHandler.log_message
tb  # lb/lab/veth.py: VethLab.__exit__
