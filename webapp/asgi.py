"""ASGI entry point: ``daphne webapp.asgi:application`` (and ``manage.py runserver``).

HTTP goes to Django (REST API, pages, and in DEBUG or with VEILPOST_SERVE_STATIC the static
files); WebSocket connections go to the relay's consumers, behind an Origin check.
"""

import gc
import os

from django.core.asgi import get_asgi_application

try:  # Daphne's WebSocket protocol (autobahn) formats a colored debug line for every frame,
    # logged or not; with click importable, the coloring is a measurable share of a frame's
    # cost. Plain text is all a log needs.
    import autobahn.util

    autobahn.util._HAS_CLICK = False
except ImportError:  # pragma: no cover - Daphne always brings autobahn
    pass

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# Set up Django (apps, settings) before importing anything that uses models or settings.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from webapp.relay.routing import websocket_urlpatterns  # noqa: E402
from webapp.relay.security import AllowedHostsOriginValidator  # noqa: E402
from webapp.staticfiles import StaticFilesHandler  # noqa: E402

http_app = (
    StaticFilesHandler(django_asgi_app) if settings.VEILPOST_SERVE_STATIC else django_asgi_app
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)

# The garbage collector, tuned for a server whose objects are long-lived (modules, open
# connections) and whose garbage is mostly freed by reference counting. Measured under a
# fan-out to 1,000 subscribers (docs/performance.md): with the defaults, a full collection ran
# about every second and paused the process 70-120 ms while finding nothing to free. Freeze
# what start-up loaded (Django, the apps, Daphne and Channels: never scanned again; still freed
# by reference counting), and collect the young generation every 10,000 net allocations
# instead of 700 and the old one 5x less often, so that short-lived objects die before they
# are promoted. Cyclic garbage (e.g. of closed connections) is still collected, later.
gc.freeze()
gc.set_threshold(10_000, 20, 50)
