"""The WSGI entry for gunicorn: `gunicorn digest.wsgi:app`, config from DIGEST_CONFIG.

The app is built when gunicorn imports this module, so a missing config or a weak secret
stops gunicorn at boot (its workers fail to start and it exits) instead of answering 500.
What the app creates (the database, the outbox of confirmations) is private to its user, as
under the command line and cron.
"""

import os

from .web import few_malloc_arenas, production_app

os.umask(0o077)
# Gunicorn's threaded workers grow as `digest serve` did (see few_malloc_arenas).
few_malloc_arenas()
app = production_app()
