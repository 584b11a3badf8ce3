"""A QuickFIX data dictionary (XML) and the checks QuickFIX makes with it.

The session-test profile validates what its peer sends the way a QuickFIX
acceptor does, so a conformance harness written against QuickFIX sees the
same Rejects: the message is read into header, body and trailer with its
repeating groups, then checked in QuickFIX's order (structure, MsgType,
required fields, then each field's value, format, tag number, membership
and group count). `Invalid` carries the SessionRejectReason and the field.
The order path never comes here: it reads the dialect it knows (docs/fix.md).
"""

import functools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

# SessionRejectReason(373): the codec's own (a message it cannot read), then the rest
from ext.fix import INCORRECT_DATA_FORMAT, INVALID_TAG_NUMBER, TAG_REPEATED, TAG_WITHOUT_VALUE

REQUIRED_TAG_MISSING = 1
TAG_NOT_DEFINED_FOR_MESSAGE = 2
VALUE_INCORRECT = 5
COMPID_PROBLEM = 9
SENDING_TIME_PROBLEM = 10
INVALID_MSG_TYPE = 11
TAG_OUT_OF_ORDER = 14
GROUP_COUNT_MISMATCH = 16
OTHER = 99

REJECT_TEXT = {
    INVALID_TAG_NUMBER: "Invalid tag number",
    REQUIRED_TAG_MISSING: "Required tag missing",
    TAG_NOT_DEFINED_FOR_MESSAGE: "Tag not defined for this message type",
    TAG_WITHOUT_VALUE: "Tag specified without a value",
    VALUE_INCORRECT: "Value is incorrect (out of range) for this tag",
    INCORRECT_DATA_FORMAT: "Incorrect data format for value",
    COMPID_PROBLEM: "CompID problem",
    SENDING_TIME_PROBLEM: "SendingTime accuracy problem",
    INVALID_MSG_TYPE: "Invalid MsgType",
    TAG_REPEATED: "Tag appears more than once",
    TAG_OUT_OF_ORDER: "Tag specified out of required order",
    GROUP_COUNT_MISMATCH: "Incorrect NumInGroup count for repeating group",
}

_NUMBER = re.compile(rb"-?(\d+\.?\d*|\.\d+)\Z")
_FORMATS = {
    "INT": re.compile(rb"-?\d+\Z"),
    "FLOAT": _NUMBER, "PRICE": _NUMBER, "QTY": _NUMBER, "AMT": _NUMBER,
    "PRICEOFFSET": _NUMBER, "PERCENTAGE": _NUMBER,
    "LENGTH": re.compile(rb"\d+\Z"), "SEQNUM": re.compile(rb"\d+\Z"),
    "NUMINGROUP": re.compile(rb"\d+\Z"), "DAYOFMONTH": re.compile(rb"\d{1,2}\Z"),
    "CHAR": re.compile(rb".\Z", re.S), "BOOLEAN": re.compile(rb"[YN]\Z"),
    "UTCTIMESTAMP": re.compile(rb"\d{8}-\d\d:\d\d:\d\d(\.\d{3,9})?\Z"),
    "UTCTIMEONLY": re.compile(rb"\d\d:\d\d:\d\d(\.\d{3,9})?\Z"),
    "UTCDATEONLY": re.compile(rb"\d{8}\Z"), "UTCDATE": re.compile(rb"\d{8}\Z"),
}  # fmt: skip
_MULTIPLE = {"MULTIPLEVALUESTRING", "MULTIPLESTRINGVALUE", "MULTIPLECHARVALUE"}


def loose_fields(raw: bytes) -> dict:
    """What can be read of a message whose tags are not all numbers."""
    pairs = (item.partition(b"=") for item in raw.split(b"\x01"))
    return {int(tag): value for tag, _, value in pairs if tag.isdigit()}


class Invalid(ValueError):
    def __init__(self, reason: int, tag: int = 0):
        super().__init__(REJECT_TEXT.get(reason, "Other"))
        self.reason, self.tag = reason, tag


class Layout:
    """The fields of a message, a group or the header: in order, the
    required ones, and the groups by their NumInGroup tag."""

    def __init__(self):
        self.order: list[int] = []
        self.required: set[int] = set()
        self.groups: dict[int, Layout] = {}

    @functools.cached_property
    def fields(self) -> set[int]:  # (asked once the dictionary is read)
        return set(self.order)


class FieldMap:
    """Fields as read (tag, value) and the entries of each group read."""

    def __init__(self):
        self.fields: list[tuple[int, bytes]] = []
        self.groups: dict[int, list[FieldMap]] = {}

    def tags(self) -> set[int]:
        return {tag for tag, _ in self.fields}


class Message:
    def __init__(self, msg_type: bytes):
        self.msg_type = msg_type
        self.header, self.body, self.trailer = FieldMap(), FieldMap(), FieldMap()
        self.out_of_order = 0  # the first header or body field out of its place


class DataDictionary:
    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.types: dict[int, str] = {}
        self.enums: dict[int, set[bytes]] = {}
        self.numbers: dict[str, int] = {}
        for node in root.find("fields"):
            tag = int(node.get("number"))
            self.numbers[node.get("name")] = tag
            self.types[tag] = node.get("type")
            values = {v.get("enum").encode() for v in node.findall("value")}
            if values:
                self.enums[tag] = values
        self.components = {c.get("name"): c for c in root.find("components") or ()}
        self.header = self.layout(root.find("header"))
        self.trailer = self.layout(root.find("trailer"))
        self.messages = {m.get("msgtype").encode(): self.layout(m)
                         for m in root.find("messages")}  # fmt: skip

    def layout(self, node, into: Layout | None = None, required: bool = True) -> Layout:
        """A node's fields, with its components' fields inline (required only
        where the component is)."""
        out = Layout() if into is None else into
        for child in node:
            needed = required and child.get("required") == "Y"
            if child.tag == "component":
                self.layout(self.components[child.get("name")], out, needed)
                continue
            tag = self.numbers[child.get("name")]
            out.order.append(tag)
            if needed:
                out.required.add(tag)
            if child.tag == "group":
                out.groups[tag] = self.layout(child)
        return out

    # -- reading, as QuickFIX's Message::setString does --

    def read(self, raw: bytes) -> Message:
        pairs = []
        for item in raw.split(b"\x01")[:-1]:
            tag, _, value = item.partition(b"=")
            try:
                pairs.append((int(tag), value))
            except ValueError:
                raise Invalid(INVALID_TAG_NUMBER) from None
        message = Message(dict(pairs).get(35, b""))
        body_layout = self.messages.get(message.msg_type)
        header_tags, trailer_tags = self.header.fields, self.trailer.fields
        place, at = "header", 0
        while at < len(pairs):
            tag, value = pairs[at]
            at += 1
            if tag in header_tags:
                if place != "header" and not message.out_of_order:
                    message.out_of_order = tag
                message.header.fields.append((tag, value))
            elif tag in trailer_tags:
                place = "trailer"
                message.trailer.fields.append((tag, value))
            else:
                if place == "trailer" and not message.out_of_order:
                    message.out_of_order = tag
                place = "body"
                message.body.fields.append((tag, value))
                if body_layout is not None and tag in body_layout.groups:
                    at = self.read_group(pairs, at, tag, body_layout.groups[tag], message.body)
        return message

    def read_group(self, pairs, at: int, count_tag: int, layout: Layout, into: FieldMap) -> int:
        entries = into.groups.setdefault(count_tag, [])
        delimiter, members, entry = layout.order[0], layout.fields, None
        while at < len(pairs):
            tag, value = pairs[at]
            if tag == delimiter or (tag in members and (entry is None or tag in entry.tags())):
                entry = FieldMap()
                entries.append(entry)
            elif tag not in members or entry is None:
                return at
            entry.fields.append((tag, value))
            at += 1
            if tag in layout.groups:
                at = self.read_group(pairs, at, tag, layout.groups[tag], entry)
        return at

    # -- checking, as QuickFIX's DataDictionary::validate does --

    def validate(self, message: Message):
        if message.out_of_order:
            raise Invalid(TAG_OUT_OF_ORDER, message.out_of_order)
        layout = self.messages.get(message.msg_type)
        if layout is None:
            raise Invalid(INVALID_MSG_TYPE)
        self.check_required(message.header, self.header)
        self.check_required(message.trailer, self.trailer)
        self.check_required(message.body, layout)
        self.check_fields(message.header, self.header, sorted_as_header=True)
        self.check_fields(message.trailer, self.trailer)
        self.check_fields(message.body, layout)

    def check_required(self, fields: FieldMap, layout: Layout):
        present = fields.tags()
        for tag in sorted(layout.required):
            if tag not in present:
                raise Invalid(REQUIRED_TAG_MISSING, tag)
        for count_tag, entries in fields.groups.items():
            for entry in entries:
                self.check_required(entry, layout.groups[count_tag])

    def check_fields(self, fields: FieldMap, layout: Layout, sorted_as_header: bool = False):
        first = (8, 9, 35) if sorted_as_header else ()
        ordered = sorted(fields.fields, key=lambda f: (f[0] not in first, f[0]))
        last = None
        for tag, value in ordered:
            if tag == last:
                raise Invalid(TAG_REPEATED, tag)
            last = tag
            if not value:
                raise Invalid(TAG_WITHOUT_VALUE, tag)
            kind = self.types.get(tag)
            form = _FORMATS.get(kind)
            if form is not None and not form.match(value):
                raise Invalid(INCORRECT_DATA_FORMAT, tag)
            allowed = self.enums.get(tag)
            if allowed is not None:
                values = value.split(b" ") if kind in _MULTIPLE else (value,)
                if any(v not in allowed for v in values):
                    raise Invalid(VALUE_INCORRECT, tag)
            if kind is None:
                raise Invalid(INVALID_TAG_NUMBER, tag)
            if tag not in layout.fields:
                raise Invalid(TAG_NOT_DEFINED_FOR_MESSAGE, tag)
            if tag in layout.groups and int(value) != len(fields.groups.get(tag, ())):
                raise Invalid(GROUP_COUNT_MISMATCH, tag)
        for count_tag, entries in fields.groups.items():
            for entry in entries:
                self.check_fields(entry, layout.groups[count_tag])

    # -- writing, as QuickFIX orders a message's fields --

    def body_fields(self, message: Message) -> list:
        """The body in QuickFIX's order: by tag, each group's entries after
        its count, an entry's fields in the group's order."""
        return self.ordered(message.body, self.messages.get(message.msg_type, Layout()), True)

    def ordered(self, fields: FieldMap, layout: Layout, by_tag: bool = False) -> list:
        rank = {tag: i for i, tag in enumerate(layout.order)}
        out = []
        for tag, value in sorted(fields.fields, key=lambda f: f[0] if by_tag else rank[f[0]]):
            out.append((tag, value))
            for entry in fields.groups.get(tag, ()):
                out += self.ordered(entry, layout.groups[tag])
        return out
