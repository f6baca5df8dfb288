"""The flywheel's data: recorded /ground requests, their reviews, and exports for fine-tuning.

Light: the standard library and Pillow only (psycopg is imported when a PostgreSQL store opens).
"""

from .store import Record, RecordStore, image_hash

__all__ = ["Record", "RecordStore", "image_hash"]
