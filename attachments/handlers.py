"""The multipart upload handler of ``POST /api/uploads``: the file goes to a temporary file on
disk chunk by chunk (never whole in memory), its sha256 and size are counted on the way, and the
upload stops as soon as it passes ``MAX_UPLOAD_BYTES``."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler


class HashingUploadHandler(TemporaryFileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.too_large = False
        self.sha256 = hashlib.sha256()
        self.size = 0

    def new_file(self, *args, **kwargs):
        self.sha256 = hashlib.sha256()
        self.size = 0
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        self.size += len(raw_data)
        if self.size > settings.MAX_UPLOAD_BYTES:
            self.too_large = True
            self.file.close()
            raise StopUpload(connection_reset=False)
        self.sha256.update(raw_data)
        return super().receive_data_chunk(raw_data, start)
