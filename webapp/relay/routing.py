"""WebSocket routes of the relay app, mounted by ``webapp.asgi``."""

from django.urls import path

from .consumers import RelayConsumer

websocket_urlpatterns = [
    path("ws/v1", RelayConsumer.as_asgi()),
]
