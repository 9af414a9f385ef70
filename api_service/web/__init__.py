"""The operators' dashboard: one static page and its modules, served by the API process."""

from api_service.web.routes import STATIC_DIR, install

__all__ = ["STATIC_DIR", "install"]
