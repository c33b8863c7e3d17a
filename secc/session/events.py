"""Moved to secc.protocol.events; kept only while secc.session.charger still imports it from here."""

from secc.protocol.events import *  # noqa: F403
