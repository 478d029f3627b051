"""Request validation at the edge: collect every bad field, then fail once with INVALID_ARGUMENT
carrying all field violations (clients fix everything in one round trip).

The rules mirror the conventions written in protos/mevaas/common/v1/common.proto.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from mevaas_core.errors import FieldViolation, InvalidArgument

INTEGER_AMOUNT = re.compile(r"^-?(0|[1-9][0-9]*)$")
DECIMAL_VALUE = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]{1,18})?$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"
)
HEX_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_ID_LENGTH = 128


class Validator:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def check(self, condition: bool, field: str, description: str) -> bool:
        if not condition:
            self.fail(field, description)
        return condition

    def required(self, value: str, field: str) -> bool:
        return self.check(bool(value.strip()), field, "is required")

    def length(self, value: str, field: str, low: int, high: int) -> bool:
        return self.check(low <= len(value) <= high, field, f"must be {low}-{high} characters")

    def identifier(self, value: str, field: str, max_length: int = MAX_ID_LENGTH) -> bool:
        """A required id of at most ``max_length`` characters; a missing one is only "is
        required", not also too short."""
        return self.required(value, field) and self.length(value, field, 1, max_length)

    def pattern(self, value: str, field: str, regex: re.Pattern[str], meaning: str) -> bool:
        return self.check(bool(regex.fullmatch(value)), field, f"must be {meaning}")

    def idempotency_key(self, value: str, field: str = "idempotency_key", *, required: bool = True) -> None:
        if not value and not required:
            return
        self.pattern(value, field, IDEMPOTENCY_KEY, "1-128 printable ASCII characters")

    def integer_amount(self, value: str, field: str, *, allow_negative: bool = False) -> int | None:
        if not self.pattern(value, field, INTEGER_AMOUNT, "a base-10 integer string"):
            return None
        amount = int(value)
        if amount < 0 and not allow_negative:
            self.fail(field, "must not be negative")
            return None
        return amount

    def decimal(
        self, value: str, field: str, *, low: Decimal | None = None, high: Decimal | None = None
    ) -> Decimal | None:
        if not self.pattern(value, field, DECIMAL_VALUE, "a decimal string such as 12.5"):
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            self.fail(field, "is not a decimal number")
            return None
        if low is not None and number < low:
            self.fail(field, f"must be >= {low}")
        if high is not None and number > high:
            self.fail(field, f"must be <= {high}")
        return number

    def address(self, value: str, field: str) -> bool:
        return self.pattern(value, field, ADDRESS, "an address (0x + 40 hex characters)")

    def page_size(self, size: int, field: str = "page.page_size") -> int:
        if not self.check(0 <= size <= MAX_PAGE_SIZE, field, f"must be 0-{MAX_PAGE_SIZE}"):
            return DEFAULT_PAGE_SIZE
        return size or DEFAULT_PAGE_SIZE

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)


def require_identifier(value: str, field: str, max_length: int = MAX_ID_LENGTH) -> None:
    """The whole validation of a request that is one id."""
    validator = Validator()
    validator.identifier(value, field, max_length)
    validator.raise_if_any()
