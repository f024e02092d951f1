"""The string fields of every REST input: strict about the type, and honest in the schema.

DRF's ``CharField`` turns a JSON number into a string (``{"title": 5}`` becomes ``"5"``), while
the OpenAPI schema says ``type: string``; generated clients and schemathesis then disagree with
the server. :class:`StrictCharField` (and :class:`StrictEmailField`) accept JSON strings only
(``validation_error`` "Must be a string."), and state the NUL ban the server enforces as the
schema ``pattern`` ``^[^\\u0000]*$`` (PostgreSQL text cannot hold NUL), unless the field has a
pattern of its own that already excludes NUL. :class:`QueryIntegerField` is the integer of a
query string, where DRF reads ``?limit=`` as "not given" although the schema calls it an
invalid integer: here it is one.
"""

from __future__ import annotations

from django.core.validators import ProhibitNullCharactersValidator, RegexValidator
from rest_framework import serializers
from rest_framework.utils import html

NO_NUL = RegexValidator(r"\A[^\x00]*\Z", message="Null characters are not allowed.", code="null_characters_not_allowed")


class StrictString:
    """Mixin for DRF string fields: only ``str`` input, and the NUL ban as a schema pattern."""

    default_error_messages = {"invalid": "Must be a string."}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not any(isinstance(v, RegexValidator) for v in self.validators):
            # Same refusal and message as DRF's ProhibitNullCharactersValidator, but visible
            # to drf-spectacular (which maps the first RegexValidator to ``pattern``).
            self.validators = [NO_NUL] + [
                v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
            ]

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(StrictString, serializers.CharField):
    pass


class StrictEmailField(StrictString, serializers.EmailField):
    default_error_messages = {"invalid": "Enter a valid email address."}


class QueryIntegerField(serializers.IntegerField):
    """An integer query parameter: an empty value (``?limit=``) is invalid, not absent."""

    def get_value(self, dictionary):
        if html.is_html_input(dictionary) and dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)
