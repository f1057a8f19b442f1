"""Real-time serving of a guim export or run: `create_app(settings)` (FastAPI), the event store
(SQLite WAL or Redis), the served model with its FAISS index. Needs `pip install 'guim[serve]'`."""

from guim.serve.app import create_app
from guim.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
