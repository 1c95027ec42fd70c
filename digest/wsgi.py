"""The WSGI entry for gunicorn: `gunicorn digest.wsgi:app`, config from DIGEST_CONFIG.

The app is built when gunicorn imports this module, so a missing config or a weak secret
stops gunicorn at boot (its workers fail to start and it exits) instead of answering 500.
"""

from .web import production_app

app = production_app()
