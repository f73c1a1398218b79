"""URLs: the home page (the web chat), the agent widget's page (/widget) and the REST API at
/api/v1/ (WebSocket routes are in asgi.py)."""

from django.urls import path, re_path

from webapp.api import api, api_not_found
from webapp.relay.views import home, widget

urlpatterns = [
    path("", home, name="home"),
    path("widget", widget, name="widget"),
    path("api/v1/", api.urls),
    # Anything else under /api/ gets the API's JSON 404, not Django's HTML page.
    re_path(r"^api/(?P<path>.*)$", api_not_found),
]
