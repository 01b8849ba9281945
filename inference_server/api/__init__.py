# SPDX-License-Identifier: GPL-3.0-or-later
"""The HTTP API's parts, assembled by ``inference_server.app.create_app``:

- ``settings``: what a server is started with (``Settings``);
- ``security``: ``GuardMiddleware`` (Origin/Host checks, bearer token or docs cookie, body size cap);
- ``request_helpers``: the multipart form, the ``params`` JSON, the app's job manager and settings for a route;
- ``models``: the pydantic response models and the error responses each route declares;
- ``error_handlers``: every error as JSON ``{"detail": ...}``;
- ``openapi``: ``StrataAPI``, whose schema declares what the middleware adds to every operation;
- ``job_routes``, ``export_routes``, ``docs_routes``: the routers.
"""
