"""The OpenAPI 3.1 document of the HTTP/JSON API, generated from the same routes (and so from
the protos): one path per RPC, one schema per message in proto3 JSON form, the error model, and
the upstream each RPC is served by."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from mevaas_gateway.domain.routes import Route

JsonObject = dict[str, Any]
F = FieldDescriptor
_SCALARS: dict[int, JsonObject] = {
    F.TYPE_DOUBLE: {"type": "number"},
    F.TYPE_FLOAT: {"type": "number"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    F.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
    # proto3 JSON writes 64-bit integers as strings (JavaScript numbers cannot hold them).
    F.TYPE_INT64: {"type": "string", "format": "int64"},
    F.TYPE_SINT64: {"type": "string", "format": "int64"},
    F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    F.TYPE_UINT64: {"type": "string", "format": "int64"},
    F.TYPE_FIXED64: {"type": "string", "format": "int64"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, JsonObject] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
}
STATUS_SCHEMA: JsonObject = {
    "type": "object",
    "description": "google.rpc.Status as proto3 JSON; INVALID_ARGUMENT carries a "
    "google.rpc.BadRequest with fieldViolations, RESOURCE_EXHAUSTED a google.rpc.RetryInfo.",
    "properties": {
        "code": {"type": "integer"},
        "status": {"type": "string", "description": "the gRPC code's name"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["code", "message"],
}
ERROR_RESPONSES = {
    "400": "INVALID_ARGUMENT, FAILED_PRECONDITION or OUT_OF_RANGE",
    "401": "UNAUTHENTICATED",
    "403": "PERMISSION_DENIED",
    "404": "NOT_FOUND",
    "409": "ALREADY_EXISTS or ABORTED",
    "429": "RESOURCE_EXHAUSTED (rate limit); see Retry-After",
    "503": "UNAVAILABLE",
}


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


class _Schemas:
    def __init__(self) -> None:
        self.schemas: dict[str, JsonObject] = {"google.rpc.Status": STATUS_SCHEMA}

    def message(self, descriptor: Any) -> JsonObject:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name.startswith("google.protobuf.") and name.endswith("Value"):
            # Wrapper types are their wrapped value (or null) in JSON.
            return self.field(descriptor.fields_by_name["value"], ignore_repeat=True)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder first: messages may refer to themselves
            properties = {f.json_name: self.field(f) for f in descriptor.fields}
            self.schemas[name] = {"type": "object", "properties": properties, "additionalProperties": False}
        return _ref(name)

    def field(self, field: Any, *, ignore_repeat: bool = False) -> JsonObject:
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.field(value)}
        if field.type == F.TYPE_MESSAGE:
            item = self.message(field.message_type)
        elif field.type == F.TYPE_ENUM:
            item = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            item = dict(_SCALARS[field.type])
        if field.is_repeated and not ignore_repeat:
            return {"type": "array", "items": item}
        return item


def build_document(routes: Iterable[Route], *, title: str, version: str) -> JsonObject:
    routes = sorted(routes, key=lambda r: r.path)
    schemas = _Schemas()
    paths: JsonObject = {}
    for route in routes:
        responses: JsonObject = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": schemas.message(route.response_type.DESCRIPTOR)}},
            }
        }
        for status, text in ERROR_RESPONSES.items():
            responses[status] = {
                "description": text,
                "content": {"application/json": {"schema": _ref("google.rpc.Status")}},
            }
        responses["429"]["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
        operation: JsonObject = {
            "operationId": f"{route.group}_{route.method}",
            "tags": [route.group],
            "summary": f"{route.group}.{route.method}",
            "description": f"Transcoded to gRPC {route.grpc_path} on the {route.upstream} service.",
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": schemas.message(route.request_type.DESCRIPTOR)}},
            },
            "responses": responses,
        }
        if route.method != "ExchangeApiKey":
            operation["security"] = [{"bearer": []}, {"apiKey": []}, {"session": []}]
        item: JsonObject = {"post": operation}
        if route.read_only:
            item["get"] = {
                key: value for key, value in operation.items() if key not in ("requestBody", "operationId")
            } | {"operationId": f"{route.group}_{route.method}_get"}
        paths[route.path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "session": {"type": "apiKey", "in": "cookie", "name": "mevaas_session"},
            },
        },
    }
