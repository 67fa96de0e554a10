# mypy: disable-error-code="valid-type, assignment"
# (the field types are built per decoder set in _build; msgspec reads them at run time, not mypy)
"""The accept path's schema check: msgspec types at least as strict as ``touchpoint-event.v1``.

``accepts(raw, event)`` answers "does the event certainly satisfy its call type's schema?" in
~2 us where the compiled fastjsonschema validator takes ~5-6 us. It may say no to an event the
schema allows (a float written as ``5.0`` for an integer, a duplicate key whose first value is
invalid): the caller then runs the fastjsonschema validator, whose verdict and message decide.
It must never say yes to an event the schema refuses; every rule below is the schema's rule or a
stricter one, and ``tests/unit/ingest/test_fastcheck.py`` checks the two agree on the 25k-record
corpus of ``touchpoint_tools/bench/prepare_cost.py`` and on generated events.

How the schema's rules map:

- ``type``/``required``/``properties``: one ``msgspec.Struct`` per call type (unknown fields
  allowed, as in the schema). JSON Schema's ``integer`` also takes ``5.0`` and msgspec's ``int``
  does not (stricter); ``number`` and ``integer`` refuse booleans in both.
- ``pattern``: fastjsonschema rewrites each unescaped ``$`` to ``\\Z`` and calls ``re.search``;
  the patterns here are written with ``\\Z`` and msgspec searches with Python's ``re``.
- ``format: date-time``: fastjsonschema's own regex for the format (copied from its pinned
  version below; a test compares it with the installed one).
- ``maxProperties``: counted on the decoded dict (what the validator sees) by :func:`_sizes_ok`.
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = ["accepts", "DATE_TIME_PATTERN"]

# fastjsonschema 2.22.3, draft04.DATE_REGEX + FORMAT_REGEXS["date-time"] (the test checks equality)
_DATE = (
    r'\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))'
    r'|(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29'
)
DATE_TIME_PATTERN = (
    r'^(?:' + _DATE + r')(t|T)(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?'
    r'(?:[+-](?:[01]\d|2[0-3]):[0-5]\d|[+-](?:[01]\d|2[0-3])[0-5]\d|z|Z)\Z'
)
_NO_CONTROL = r"^[^\u0000-\u001f]+\Z"


def _text(limit: int) -> Any:
    return Annotated[str, Meta(max_length=limit)]


def _build(no_control: bool) -> dict[str, msgspec.json.Decoder[Any]]:
    """One decoder per call type. ``no_control=False`` leaves out the patterns that only refuse
    control characters: for a record without a backslash, where no string can hold one."""
    IdStr = Annotated[str, Meta(min_length=1, max_length=256, pattern=_NO_CONTROL)] if no_control else \
        Annotated[str, Meta(min_length=1, max_length=256)]
    IdValue = IdStr | int
    Timestamp = Annotated[str, Meta(max_length=64, pattern=DATE_TIME_PATTERN)]
    Channel = Literal["web", "app", "miniprogram", "ecommerce", "pos", "crm", "service"]
    IdType = Literal["user_id", "anonymous_id", "device_id", "email", "phone", "member_id", "crm_id", "pos_card_id",
                     "wechat_openid", "wechat_unionid", "order_id"]
    MessageId = Annotated[str, Meta(min_length=1, max_length=100, pattern=_NO_CONTROL)] if no_control else \
        Annotated[str, Meta(min_length=1, max_length=100)]
    Amount = Annotated[float, Meta(ge=-1e12, le=1e12)]

    class ExternalId(Struct, kw_only=True):
        id: IdValue
        type: IdType
        collection: _text(100) | UnsetType = UNSET
        encoding: Literal["none"] | UnsetType = UNSET

    class Traits(Struct, kw_only=True):
        email: _text(256) | UnsetType = UNSET
        phone: _text(64) | int | UnsetType = UNSET

    class Device(Struct, kw_only=True):
        id: IdValue | UnsetType = UNSET

    class Location(Struct, kw_only=True):
        region: _text(100) | UnsetType = UNSET
        city: _text(100) | UnsetType = UNSET
        country: _text(100) | UnsetType = UNSET

    class Store(Struct, kw_only=True):
        id: IdValue | UnsetType = UNSET
        region: _text(100) | UnsetType = UNSET

    class Context(Struct, kw_only=True):
        channel: Channel | UnsetType = UNSET
        device: Device | UnsetType = UNSET
        traits: Traits | UnsetType = UNSET
        externalIds: Annotated[list[ExternalId], Meta(max_length=50)] | UnsetType = UNSET  # noqa: N815 (the JSON name)
        location: Location | UnsetType = UNSET
        store: Store | UnsetType = UNSET
        consent: dict[str, Any] | UnsetType = UNSET
        locale: _text(64) | UnsetType = UNSET
        timezone: _text(64) | UnsetType = UNSET

    class Product(Struct, kw_only=True):
        product_id: IdValue | UnsetType = UNSET
        sku: _text(256) | UnsetType = UNSET
        category: _text(256) | UnsetType = UNSET
        name: _text(512) | UnsetType = UNSET
        price: Annotated[float, Meta(ge=0, le=1e12)] | UnsetType = UNSET
        quantity: Annotated[int, Meta(ge=0, le=1_000_000)] | UnsetType = UNSET

    class Properties(Struct, kw_only=True):
        products: Annotated[list[Product], Meta(max_length=100)] | UnsetType = UNSET
        order_id: IdValue | UnsetType = UNSET
        revenue: Amount | UnsetType = UNSET
        total: Amount | UnsetType = UNSET
        currency: Annotated[str, Meta(pattern=r"^[A-Za-z]{3}\Z")] | UnsetType = UNSET
        category: _text(256) | UnsetType = UNSET
        region: _text(100) | UnsetType = UNSET
        store_id: IdValue | UnsetType = UNSET

    class Common(Struct, kw_only=True):
        type: str
        messageId: MessageId  # noqa: N815
        sourceId: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}\Z")] | UnsetType = UNSET  # noqa: N815
        anonymousId: IdValue | UnsetType = UNSET  # noqa: N815
        userId: IdValue | UnsetType = UNSET  # noqa: N815
        timestamp: Timestamp | UnsetType = UNSET
        originalTimestamp: Timestamp | UnsetType = UNSET  # noqa: N815
        sentAt: Timestamp | UnsetType = UNSET  # noqa: N815
        channel: Channel | UnsetType = UNSET
        context: Context | UnsetType = UNSET
        traits: Traits | UnsetType = UNSET
        properties: dict[str, Any] | UnsetType = UNSET
        integrations: dict[str, Any] | UnsetType = UNSET
        version: int | str | UnsetType = UNSET

    class Identify(Common, kw_only=True):
        pass

    class Track(Common, kw_only=True):
        event: Annotated[str, Meta(min_length=1, max_length=200)]
        properties: Properties | UnsetType = UNSET

    class Page(Common, kw_only=True):
        name: _text(200) | UnsetType = UNSET
        category: _text(256) | UnsetType = UNSET
        properties: Properties | UnsetType = UNSET

    class Screen(Page, kw_only=True):
        pass

    class Group(Common, kw_only=True):
        groupId: IdValue  # noqa: N815

    class Alias(Common, kw_only=True):
        previousId: IdValue  # noqa: N815
        userId: IdValue  # noqa: N815


    return {name: msgspec.json.Decoder(cls) for name, cls in
            (("identify", Identify), ("track", Track), ("page", Page), ("screen", Screen), ("group", Group), ("alias", Alias))}


_STRICT = _build(no_control=True)
_PLAIN = _build(no_control=False)
_TYPED_PROPERTIES = frozenset({"track", "page", "screen"})  # call types whose properties have maxProperties 300


def _sizes_ok(event: dict[str, Any], call_type: str) -> bool:
    """The schema's ``maxProperties`` rules, counted on the decoded event (duplicate keys merged, as
    the validator sees them). Types are already checked, so the values are dicts when present."""
    traits = event.get("traits")
    if traits is not None and len(traits) > 300:
        return False
    context = event.get("context")
    if context is not None:
        traits = context.get("traits")
        if traits is not None and len(traits) > 300:
            return False
        consent = context.get("consent")
        if consent is not None and len(consent) > 50:
            return False
    if call_type in _TYPED_PROPERTIES:
        props = event.get("properties")
        if props is not None and len(props) > 300:
            return False
    return True


def accepts(raw: bytes, event: dict[str, Any], call_type: str) -> bool:
    """True when ``event`` (decoded from ``raw``) certainly satisfies ``call_type``'s schema.

    False means "not certain": run the fastjsonschema validator for the verdict and its message.
    """
    decoders = _STRICT if b"\\" in raw else _PLAIN  # a control character in a JSON string is escaped
    try:
        decoders[call_type].decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return _sizes_ok(event, call_type)
